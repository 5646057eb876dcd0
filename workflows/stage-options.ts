import { ActivityCancellationType, type ActivityOptions } from '@temporalio/workflow';

/**
 * Timeouts and retry policy of each stage activity. Every stage heartbeats at least every few seconds, so a worker
 * that dies mid-stage is noticed within the stage's `heartbeatTimeout` and the stage is retried on another worker,
 * instead of after its whole `startToCloseTimeout`. Non-retryable failures (bad input, missing secret, failed job)
 * are marked by the activities themselves.
 *
 * Every activity has the cancellation type `WAIT_CANCELLATION_COMPLETED`, the default, which `waitForJob` states
 * explicitly. So when the batch is cancelled, the workflow waits until the running stage has stopped before it runs
 * the compensations, and an undo step never races the step it undoes. The wait stage cancels the job as it stops.
 */
export const STAGE_OPTIONS = {
  authenticate: {
    startToCloseTimeout: '1 minute',
    heartbeatTimeout: '20 seconds',
    retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 5 },
  },
  checkVaultAccess: {
    startToCloseTimeout: '1 minute',
    heartbeatTimeout: '20 seconds',
    retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 5 },
  },
  ensureDatastore: {
    startToCloseTimeout: '2 minutes',
    heartbeatTimeout: '20 seconds',
    retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 5 },
  },
  registerDataset: {
    startToCloseTimeout: '2 hours',
    heartbeatTimeout: '20 seconds',
    retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '2 minutes', maximumAttempts: 5 },
  },
  /** Writes a manifest of the items to score again and, on Azure, copies those items; 1 hour covers many copies. */
  selectItems: {
    startToCloseTimeout: '1 hour',
    heartbeatTimeout: '20 seconds',
    retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '2 minutes', maximumAttempts: 5 },
  },
  submitScoringJob: {
    startToCloseTimeout: '5 minutes',
    heartbeatTimeout: '20 seconds',
    retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '2 minutes', maximumAttempts: 5 },
  },
  /**
   * Waiting polls the job inside one heartbeating attempt for up to a window of a few minutes. A job still running
   * at the window's end fails the attempt with a benign `JobStillRunning` failure, and the next attempt continues.
   * Retries add no history events, so a job of any length adds the same few events. Attempts are unlimited because
   * windows and worker restarts use them up. Instead, `scheduleToCloseTimeout` bounds the whole wait, and the
   * activity fails for good once the job could not be polled for 15 minutes (`JobUnreachable`).
   *
   * The 10 s heartbeat timeout makes cancellation prompt: the SDK sends heartbeats at most every 0.8 × 10 s, and a
   * cancellation request reaches the activity with the next heartbeat's response.
   */
  waitForJob: {
    scheduleToCloseTimeout: '30 days',
    startToCloseTimeout: '10 minutes',
    heartbeatTimeout: '10 seconds',
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '1 minute' },
  },
  collectResults: {
    startToCloseTimeout: '2 hours',
    heartbeatTimeout: '20 seconds',
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
  'selectItems',
  'submitScoringJob',
  'waitForJob',
  'collectResults',
];

/**
 * Timeouts and retry policy of the undo steps that run when a batch fails for good or is cancelled. They retry
 * longer than the stages, because a failed undo leaves a running job or an asset behind. An undo step that still
 * fails is reported in the batch's failure and status.
 */
export const COMPENSATION_OPTIONS = {
  /** Cancels the job and waits until it reaches a terminal status; Azure ML may take minutes to stop a job. */
  cancelScoringJob: {
    startToCloseTimeout: '20 minutes',
    heartbeatTimeout: '30 seconds',
    retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '2 minutes', maximumAttempts: 10 },
  },
  deleteDatasetVersion: {
    startToCloseTimeout: '2 minutes',
    heartbeatTimeout: '20 seconds',
    retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '2 minutes', maximumAttempts: 10 },
  },
  deleteDatastore: {
    startToCloseTimeout: '2 minutes',
    heartbeatTimeout: '20 seconds',
    retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '2 minutes', maximumAttempts: 10 },
  },
} as const satisfies Record<string, ActivityOptions>;

export type CompensationAction = keyof typeof COMPENSATION_OPTIONS;
