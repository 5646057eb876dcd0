import { Context, heartbeat, log } from '@temporalio/activity';
import { classifyFailures } from './errors';
import { selectBackend } from './backends/registry';
import type { ActivityDependencies } from './dependencies';
import type { JobOutcome, WaitForJobInput } from './types';

const DEFAULT_POLL_INTERVAL_MS = 1000;

/**
 * Stage 6: waits for the job inside one heartbeating activity, so a job of any length adds only a few events to
 * the workflow history. Each heartbeat carries the job's progress, which `amlbatch status` reads.
 *
 * Cancellation requested by the workflow cancels the job; a worker shutdown only stops waiting, and the next attempt
 * on another worker attaches to the same job.
 */
export function createWaitForJob(deps: ActivityDependencies) {
  return async function waitForJob(input: WaitForJobInput): Promise<JobOutcome> {
    return classifyFailures(async () => {
      const context = Context.current();
      let lastStatus = '';
      const outcome = await selectBackend(deps.backends, input.backend).waitForJob(input, {
        pollIntervalMs: deps.jobPollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS,
        signal: context.cancellationSignal,
        isCancelRequested: () => context.cancellationDetails?.cancelRequested === true,
        onPoll: (poll) => {
          heartbeat(poll);
          if (poll.status !== lastStatus) {
            log.info('Job status changed', { jobName: poll.jobName, status: poll.status, previousStatus: lastStatus || undefined });
            lastStatus = poll.status;
          }
        },
      });
      log.info('Job completed', { jobName: outcome.jobName, ...outcome.progress });
      return outcome;
    });
  };
}
