// The workflow bundle's entry point: every workflow the worker runs is exported from here, with its messages.
export { batchScoring } from './batch-scoring';
export { abortSignal, retrySignal, statusQuery } from './messages';
