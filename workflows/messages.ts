import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { BatchStatus } from './summary';

/** The argument of the `abort` signal. */
export interface AbortRequest {
  /** The operator's reason for giving up, for the failure's details and the log. */
  reason?: string;
}

/**
 * The query and signals of `batchScoring`, in their own module so the CLI can import them without the workflow.
 * Descriptions are set where the workflow registers the handlers, so the Temporal UI lists them.
 */
export const statusQuery = defineQuery<BatchStatus>('status');
/** Runs a failed stage again; the argument is a JSON merge patch of corrected input fields, or nothing. */
export const retrySignal = defineSignal<[Record<string, unknown>?]>('retry');
/** Gives up on a failed stage, so the batch compensates and fails. */
export const abortSignal = defineSignal<[AbortRequest?]>('abort');
