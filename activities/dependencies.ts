import type { BackendRegistry } from './backends/registry';

/** What the stage activities need from the worker that hosts them. */
export interface ActivityDependencies {
  backends: BackendRegistry;
  /** Milliseconds between two polls of a running job. @default 1000 */
  jobPollIntervalMs?: number;
}
