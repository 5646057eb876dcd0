import { ApplicationFailure, ApplicationFailureCategory, CancelledFailure } from '@temporalio/common';
import { Context, log } from '@temporalio/activity';
import { toActivityFailure } from './errors';
import { HeartbeatKeepalive } from './heartbeat';
import { selectBackend } from './backends/registry';
import type { JobPoll } from './backends/backend';
import type { ActivityDependencies } from './dependencies';
import type { JobOutcome, WaitForJobInput } from './types';

const DEFAULT_POLL_INTERVAL_MS = 1000;
const DEFAULT_WAIT_WINDOW_MS = 5 * 60_000;
/** Time an attempt leaves before its `startToCloseTimeout`, so a window always ends before the timeout does. */
const WINDOW_MARGIN_MS = 60_000;
/**
 * Time without a successful poll (15 minutes) after which the stage fails as `JobUnreachable` and waits for an
 * operator. Until then poll errors are retried. Attempts are unlimited, so this ends a wait on a broken connection
 * or credential.
 */
const MAX_UNREACHABLE_MS = 15 * 60_000;

/** Heartbeat details of the wait stage: the last poll and its time. `amlbatch status` and `watch` read them. */
export interface WaitHeartbeat extends JobPoll {
  /** ISO 8601 time of the poll, by the worker's clock. */
  polledAt: string;
}

/** Input of the wait stage. */
export interface WaitInput extends WaitForJobInput {
  /**
   * Ends each attempt after a polling window with `JobStillRunning`. The workflow sets it because it schedules the
   * wait with unlimited attempts. A wait that older workflow code scheduled (at most 20 attempts of up to 30 days)
   * lacks it and polls in one attempt, so its windows cannot use up its attempts.
   */
  pollInWindows?: boolean;
}

/** The abort reason that ends an attempt's polling window. */
class WaitWindowElapsed extends Error {
  constructor(readonly windowMs: number) {
    super(`polling window of ${windowMs} ms elapsed`);
    this.name = 'WaitWindowElapsed';
  }
}

/**
 * Stage 6: waits for the job by polling it inside a heartbeating attempt, so waiting adds only a few events to the
 * workflow history however long the job runs. Each heartbeat carries the job's progress (`WaitHeartbeat`).
 *
 * With `pollInWindows`, one attempt polls for at most a window (`jobWaitWindowMs`). A job still running then ends
 * the attempt with a retryable, benign `JobStillRunning` failure, and the next attempt continues from the last
 * heartbeat. Retries add no history events. Bounded attempts keep a hung poll from blocking the stage until a 30-day
 * timeout, and the time between attempts is a server-side delay, which time-skipping tests skip.
 *
 * Cancellation requested by the workflow cancels the job; a worker shutdown only stops waiting, and the next
 * attempt on another worker attaches to the same job.
 */
export function createWaitForJob(deps: ActivityDependencies) {
  const pollIntervalMs = deps.jobPollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  const recheckDelayMs = deps.jobRecheckDelayMs ?? pollIntervalMs;

  return async function waitForJob(input: WaitInput): Promise<JobOutcome> {
    const context = Context.current();
    const previous = context.info.heartbeatDetails as WaitHeartbeat | undefined;
    const window = new AbortController();
    let windowTimer: NodeJS.Timeout | undefined;
    if (input.pollInWindows) {
      const windowMs = Math.max(1, Math.min(deps.jobWaitWindowMs ?? DEFAULT_WAIT_WINDOW_MS, context.info.startToCloseTimeoutMs - WINDOW_MARGIN_MS));
      windowTimer = setTimeout(() => window.abort(new WaitWindowElapsed(windowMs)), windowMs);
    }
    const keepalive = new HeartbeatKeepalive(context, previous);
    let last = previous;

    try {
      const outcome = await selectBackend(deps.backends, input.backend).waitForJob(input, {
        pollIntervalMs,
        signal: AbortSignal.any([context.cancellationSignal, window.signal]),
        isCancelRequested: () => context.cancellationDetails?.cancelRequested === true,
        onPoll: (poll) => {
          if (poll.status !== last?.status) {
            log.info('Job status changed', { jobName: poll.jobName, status: poll.status, previousStatus: last?.status });
          }
          last = { ...poll, polledAt: new Date().toISOString() };
          keepalive.beat(last);
        },
      });
      log.info('Job completed', { jobName: outcome.jobName, ...outcome.progress });
      return outcome;
    } catch (error) {
      if (error instanceof WaitWindowElapsed) throw stillRunning(input.jobName, last, recheckDelayMs);
      // Cancellation must reach Temporal unchanged so the activity is reported as cancelled, not failed.
      if (error instanceof CancelledFailure) throw error;
      const failure = toActivityFailure(error);
      const unreachableMs = Date.now() - lastContact(last, context.info.scheduledTimestampMs);
      if (!failure.nonRetryable && unreachableMs > MAX_UNREACHABLE_MS) {
        throw ApplicationFailure.create({
          message:
            `job ${input.jobName} could not be polled for ${Math.round(unreachableMs / 60_000)} minutes (${failure.message}); ` +
            "check the backend's service, network and credentials, then retry the stage",
          type: 'JobUnreachable',
          nonRetryable: true,
          details: [{ jobName: input.jobName, lastPoll: last }],
          cause: failure,
        });
      }
      throw failure;
    } finally {
      clearTimeout(windowTimer);
      keepalive.stop();
    }
  };
}

function stillRunning(jobName: string, last: WaitHeartbeat | undefined, recheckDelayMs: number): ApplicationFailure {
  const progress = last?.progress;
  const done = progress ? ` (${progress.itemsSucceeded + progress.itemsFailed} of ${progress.itemsTotal} items done)` : '';
  return ApplicationFailure.create({
    message: `job ${jobName} is still ${last?.status ?? 'starting'}${done}; the next attempt keeps polling`,
    type: 'JobStillRunning',
    nonRetryable: false,
    nextRetryDelay: recheckDelayMs,
    // Benign: the SDK logs it at DEBUG and counts no failure metric, because a running job is expected.
    category: ApplicationFailureCategory.BENIGN,
  });
}

/** Milliseconds since the epoch of the last successful poll, or of the wait's first schedule when none succeeded. */
function lastContact(last: WaitHeartbeat | undefined, scheduledMs: number): number {
  const polled = last ? Date.parse(last.polledAt) : Number.NaN;
  return Number.isNaN(polled) ? scheduledMs : polled;
}
