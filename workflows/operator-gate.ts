import { condition, log } from '@temporalio/workflow';
import type { BatchTracker } from './batch-status';
import { InvalidBatchInputError } from './input';
import type { AbortRequest } from './messages';
import { applyCorrections, retryFieldsFor, retrySubmitsNewJob, type CorrectedInput } from './operator-retry';
import type { StageName } from './stage-options';

/** The operator's decision about a failed stage, or `timed_out` when no signal came before the deadline. */
export type OperatorDecision =
  | { kind: 'retry'; corrected: CorrectedInput }
  | { kind: 'abort'; reason?: string }
  | { kind: 'timed_out' };

interface Waiting {
  stage: StageName;
  failureType: string;
  input: Record<string, unknown>;
  decision?: OperatorDecision;
}

/**
 * Holds a failed stage until an operator sends `retry` or `abort`, or the deadline passes. The signal handlers call
 * `retry` and `abort`. A signal that arrives while no stage waits is logged and ignored, because applying it to a
 * later failure would act on a decision made for another problem.
 */
export class OperatorGate {
  private waiting: Waiting | undefined;

  constructor(private readonly tracker: BatchTracker) {}

  /** Handles the `retry` signal: validates the corrections and, when they are valid, releases the stage. */
  retry(corrections: unknown): void {
    const waiting = this.waiting;
    if (!waiting || waiting.decision) {
      log.warn('Retry signal ignored: no stage is waiting for an operator');
      return;
    }
    try {
      waiting.decision = { kind: 'retry', corrected: applyCorrections(waiting.stage, waiting.failureType, waiting.input, corrections) };
    } catch (error) {
      if (!(error instanceof InvalidBatchInputError)) throw error;
      log.warn('Retry signal rejected', { stage: waiting.stage, error: error.message });
      this.tracker.retryRejected(error.message);
    }
  }

  /** Handles the `abort` signal: the stage fails for good and the batch compensates. */
  abort(request: AbortRequest | undefined): void {
    const waiting = this.waiting;
    if (!waiting || waiting.decision) {
      log.warn('Abort signal ignored: no stage is waiting for an operator');
      return;
    }
    const reason = typeof request?.reason === 'string' ? request.reason : undefined;
    waiting.decision = { kind: 'abort', ...(reason !== undefined ? { reason } : {}) };
  }

  /**
   * Records the failure for the `status` query and the UI, then waits up to `timeoutSeconds` for a decision.
   * Throws `CancelledFailure` when the batch is cancelled meanwhile.
   */
  async wait(
    stage: StageName,
    failure: { message: string; type: string },
    input: Record<string, unknown>,
    timeoutSeconds: number,
  ): Promise<OperatorDecision> {
    const now = Date.now();
    this.waiting = { stage, failureType: failure.type, input };
    this.tracker.awaitingOperator({
      stage,
      failureType: failure.type,
      message: failure.message,
      since: new Date(now).toISOString(),
      deadline: new Date(now + timeoutSeconds * 1000).toISOString(),
      retryFields: retryFieldsFor(stage, failure.type),
      retrySubmitsNewJob: retrySubmitsNewJob(stage, failure.type),
      input,
    });
    log.warn('Stage failed; waiting for an operator', { stage, failureType: failure.type, error: failure.message, timeoutSeconds });

    try {
      const decided = await condition(() => this.waiting?.decision !== undefined, timeoutSeconds * 1000, {
        summary: `wait for an operator to retry or abort ${stage}`,
      });
      const decision: OperatorDecision = decided && this.waiting?.decision ? this.waiting.decision : { kind: 'timed_out' };
      log.info('Operator decision', { stage, decision: decision.kind });
      this.tracker.operatorDecided(stage, decision.kind === 'retry');
      return decision;
    } finally {
      this.waiting = undefined;
    }
  }
}
