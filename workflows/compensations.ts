import { ActivityFailure, CancellationScope, log } from '@temporalio/workflow';
import type { CompensationAction } from './stage-options';
import type { CompensationRecord } from './summary';

/** One registered undo step; `run` is absent for an asset the batch keeps, which is only reported. */
export interface CompensationStep {
  action: CompensationAction;
  /** Job name, `dataset:version` or datastore name; a step may update it once the name is known. */
  target: string;
  /** Runs the undo activity and returns what it found or did, for the record. */
  run?: () => Promise<string>;
  /** The reason the step does not run, when `run` is absent. */
  keptBecause?: string;
}

/**
 * The batch's saga: each stage that creates something registers how to undo it, and `compensate` runs the undo
 * steps in reverse order when the batch fails for good or is cancelled. Each step is its own activity with its own
 * retry policy. A step that still fails is recorded and the next steps run anyway, so a failed job cancellation
 * does not leave the assets behind too.
 */
export class Compensations {
  private readonly steps: CompensationStep[] = [];

  constructor(
    private readonly records: CompensationRecord[],
    private readonly onChange: () => void,
  ) {}

  /** Registers an undo step and returns it, so the caller can fill in its target once known. */
  add(step: CompensationStep): CompensationStep {
    this.steps.push(step);
    return step;
  }

  /**
   * Runs every registered step, newest first, in a non-cancellable scope: the undo must run even when the batch
   * is being cancelled. Returns the records of the steps, which also appear in the `status` query.
   */
  async compensate(): Promise<CompensationRecord[]> {
    return CancellationScope.nonCancellable(async () => {
      const ran: CompensationRecord[] = [];
      for (const step of [...this.steps].reverse()) {
        const record: CompensationRecord = { action: step.action, target: step.target, state: step.run ? 'running' : 'skipped' };
        if (step.keptBecause !== undefined) record.detail = step.keptBecause;
        this.records.push(record);
        ran.push(record);
        this.onChange();
        if (!step.run) continue;

        try {
          record.detail = await step.run();
          record.state = 'completed';
          log.info('Compensation step completed', { action: step.action, target: step.target, detail: record.detail });
        } catch (error) {
          record.state = 'failed';
          record.detail = causeMessage(error);
          log.error('Compensation step failed', { action: step.action, target: step.target, error: record.detail });
        }
        this.onChange();
      }
      return ran;
    });
  }
}

function causeMessage(error: unknown): string {
  if (error instanceof ActivityFailure && error.cause) return error.cause.message;
  return error instanceof Error ? error.message : String(error);
}
