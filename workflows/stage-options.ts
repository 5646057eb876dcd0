import type { ActivityOptions } from '@temporalio/workflow';

/**
 * Timeouts and retry policy of each stage activity. Short control-plane stages fail fast and retry a few times;
 * listing and collecting may take hours on huge folders and heartbeat; waiting lasts as long as the job, heartbeats
 * so a dead worker is noticed within `heartbeatTimeout`, and survives worker restarts through its retries.
 * Non-retryable failures (bad input, missing secret, failed job) are marked by the activities themselves.
 */
export const STAGE_OPTIONS = {
  authenticate: {
    startToCloseTimeout: '1 minute',
    retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 5 },
  },
  checkVaultAccess: {
    startToCloseTimeout: '1 minute',
    retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 5 },
  },
  ensureDatastore: {
    startToCloseTimeout: '2 minutes',
    retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 5 },
  },
  registerDataset: {
    startToCloseTimeout: '2 hours',
    heartbeatTimeout: '2 minutes',
    retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '2 minutes', maximumAttempts: 5 },
  },
  submitScoringJob: {
    startToCloseTimeout: '5 minutes',
    retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '2 minutes', maximumAttempts: 5 },
  },
  waitForJob: {
    startToCloseTimeout: '30 days',
    heartbeatTimeout: '15 seconds',
    retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 20 },
  },
  collectResults: {
    startToCloseTimeout: '2 hours',
    retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '2 minutes', maximumAttempts: 5 },
  },
} as const satisfies Record<string, ActivityOptions>;

export type StageName = keyof typeof STAGE_OPTIONS;

/** Stages in the order the workflow runs them. */
export const STAGE_ORDER: readonly StageName[] = [
  'authenticate',
  'checkVaultAccess',
  'ensureDatastore',
  'registerDataset',
  'submitScoringJob',
  'waitForJob',
  'collectResults',
];
