import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { createActivities, type ActivityDependencies } from '../../activities';
import type { ScoringBackend } from '../../activities/backends/backend';
import { statusQuery } from '../../workflows/messages';
import type { BatchStatus } from '../../workflows/summary';
import { uniqueTaskQueue, workflowBundle } from '../support/temporal-env';

/** A worker with the real activities over `backend`, on its own task queue of `env`. Each test makes its own. */
export async function createFakeWorker(
  env: TestWorkflowEnvironment,
  backend: ScoringBackend,
  deps: Partial<ActivityDependencies> = {},
): Promise<{ worker: Worker; taskQueue: string }> {
  const taskQueue = uniqueTaskQueue('durable');
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: createActivities({ backends: { local: backend }, jobPollIntervalMs: 10, ...deps }),
    // Heartbeats reach the server at most this often, and a cancellation request arrives with a heartbeat's response;
    // production workers send them every 0.8 × heartbeatTimeout (8 s for the wait stage).
    maxHeartbeatThrottleInterval: '1 second',
  });
  return { worker, taskQueue };
}

/** Starts a batch on `taskQueue` with the workflow id equal to the task queue name. */
export function startBatch(env: TestWorkflowEnvironment, taskQueue: string, input: unknown): Promise<WorkflowHandle> {
  return env.client.workflow.start('batchScoring', { taskQueue, workflowId: taskQueue, args: [input] });
}

/**
 * Queries the batch until `predicate` holds, and returns that status. Queries do not unlock time skipping, so a
 * time-skipping server's clock stands still meanwhile and no deadline passes.
 */
export async function waitForStatus(handle: WorkflowHandle, predicate: (status: BatchStatus) => boolean, what: string): Promise<BatchStatus> {
  let last: BatchStatus | undefined;
  for (let attempt = 0; attempt < 600; attempt += 1) {
    last = await handle.query(statusQuery).catch(() => undefined);
    if (last && predicate(last)) return last;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`batch ${handle.workflowId} never reached "${what}"; last status: ${JSON.stringify(last)}`);
}

/** Awaits a batch that must fail and returns its WorkflowFailedError. */
export async function failureOf(promise: Promise<unknown>): Promise<WorkflowFailedError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof WorkflowFailedError) return error;
    throw error;
  }
  throw new Error('expected the batch to fail, but it completed');
}

/** The first details object of the batch's `StageFailed` or `CompensationFailed` failure. */
export function failureDetails(failure: WorkflowFailedError): Record<string, unknown> {
  const details = (failure.cause as { details?: unknown[] } | undefined)?.details;
  return (details?.[0] ?? {}) as Record<string, unknown>;
}

/** Names of the activities the batch scheduled, in order, read from its history. */
export async function scheduledActivities(handle: WorkflowHandle): Promise<string[]> {
  const history = await handle.fetchHistory();
  return (history.events ?? []).flatMap((event) => {
    const name = event.activityTaskScheduledEventAttributes?.activityType?.name;
    return name ? [name] : [];
  });
}
