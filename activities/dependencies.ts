import type { BackendRegistry } from './backends/registry';

/** Dependencies of the stage activities, given by the worker that hosts them. */
export interface ActivityDependencies {
  backends: BackendRegistry;
  /** Milliseconds between two polls of a running job. @default 1000 */
  jobPollIntervalMs?: number;
  /**
   * Maximum milliseconds one `waitForJob` attempt polls before it ends with `JobStillRunning` and the next attempt
   * takes over. Capped at the stage's `startToCloseTimeout` minus one minute. @default 300000 (5 minutes)
   */
  jobWaitWindowMs?: number;
  /** Milliseconds between a `JobStillRunning` attempt and the next. @default `jobPollIntervalMs` */
  jobRecheckDelayMs?: number;
}
