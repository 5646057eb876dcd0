import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { createActivities } from '../activities';
import { StageError } from '../activities/errors';
import { STAGE_OPTIONS, STAGE_ORDER } from '../workflows/stage-options';
import type { BatchSummary } from '../workflows/summary';
import { FakeBackend } from './support/fake-backend';
import { createTimeSkippingEnv, uniqueTaskQueue, workflowBundle } from './support/temporal-env';

// Stage retry policies on the time-skipping test server: backoff intervals pass in virtual time, so a policy
// with minutes of backoff is exercised in seconds. The real activities run over an in-memory backend.

let env: TestWorkflowEnvironment;

beforeAll(async () => {
  env = await createTimeSkippingEnv();
});

afterAll(async () => {
  await env?.teardown();
});

async function runBatch(backend: FakeBackend, input: unknown = { inputFolder: '/fake/data', operatorRetryTimeout: 0 }): Promise<BatchSummary> {
  const taskQueue = uniqueTaskQueue('retry');
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: createActivities({ backends: { local: backend }, jobPollIntervalMs: 10 }),
  });
  return worker.runUntil(
    env.client.workflow.execute('batchScoring', { taskQueue, workflowId: taskQueue, args: [input] }) as Promise<BatchSummary>,
  );
}

/** Input and backend under which every stage runs; selectItems runs only for a follow-up job. */
function batchFor(stage: string): { backend: FakeBackend; input: unknown } {
  const backend = new FakeBackend();
  if (stage !== 'selectItems') return { backend, input: { inputFolder: '/fake/data', operatorRetryTimeout: 0 } };
  backend.failedItemsPerCollect = [1, 0];
  return { backend, input: { inputFolder: '/fake/data', operatorRetryTimeout: 0, followUpRounds: 1 } };
}

async function failureOf(promise: Promise<unknown>): Promise<WorkflowFailedError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof WorkflowFailedError) return error;
    throw error;
  }
  throw new Error('expected the workflow to fail');
}

describe('stage retry policies', () => {
  test.each(STAGE_ORDER.map((stage) => [stage]))('transient failures of %s are retried', async (stage) => {
    const { backend, input } = batchFor(stage);
    backend.failures[stage] = [new Error('connection reset'), new Error('connection reset')];

    const summary = await runBatch(backend, input);

    expect(backend.calls[stage]).toBe(3);
    expect(summary.outcome).toBe('scored');
    expect(summary.itemsScored).toBe(3);
  });

  // waitForJob retries without limit, bounded by its scheduleToCloseTimeout instead (see the long-batch tests).
  const limitedStages = STAGE_ORDER.filter((stage) => stage !== 'waitForJob');
  test.each(limitedStages.map((stage) => [stage]))('retries of %s stop at maximumAttempts', async (stage) => {
    const { backend, input } = batchFor(stage);
    const retry = STAGE_OPTIONS[stage].retry;
    const attempts = 'maximumAttempts' in retry ? retry.maximumAttempts : 0;
    backend.failures[stage] = Array.from({ length: attempts + 1 }, () => new Error('still down'));

    const failure = await failureOf(runBatch(backend, input));

    expect(backend.calls[stage]).toBe(attempts);
    expect(failure.cause?.message).toBe(`stage ${stage} failed: still down`);
  });

  test('non-retryable stage error fails after one attempt', async () => {
    const backend = new FakeBackend();
    backend.failures.checkVaultAccess = [new StageError('NotFound', 'secret "model-signing-key" not found')];

    const failure = await failureOf(runBatch(backend));

    expect(backend.calls.checkVaultAccess).toBe(1);
    expect(backend.calls.ensureDatastore).toBe(0);
    expect(failure.cause?.message).toBe('stage checkVaultAccess failed: secret "model-signing-key" not found');
    const activityFailure = failure.cause?.cause as Error | undefined;
    const cause = activityFailure?.cause;
    expect(cause).toBeInstanceOf(ApplicationFailure);
    expect((cause as ApplicationFailure).type).toBe('NotFound');
  });

  test('permission error from the file system is not retried', async () => {
    const backend = new FakeBackend();
    backend.failures.ensureDatastore = [Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' })];

    await failureOf(runBatch(backend));

    expect(backend.calls.ensureDatastore).toBe(1);
  });

  test('invalid input fails before any stage runs', async () => {
    const backend = new FakeBackend();

    const failure = await failureOf(runBatch(backend, { inputFolder: '/d', miniBatchSize: -4, operatorRetryTimeout: 0 }));

    expect(Object.values(backend.calls).every((count) => count === 0)).toBe(true);
    expect(failure.cause).toBeInstanceOf(ApplicationFailure);
    expect((failure.cause as ApplicationFailure).type).toBe('InvalidInput');
    expect(failure.cause?.message).toContain('miniBatchSize = -4 is not allowed');
  });

  test('empty dataset skips submit, wait and collect', async () => {
    const backend = new FakeBackend();
    backend.itemCount = 0;

    const summary = await runBatch(backend);

    expect(summary.outcome).toBe('nothing_to_score');
    expect(backend.calls.submitScoringJob).toBe(0);
    expect(summary.stages.filter((s) => s.state === 'skipped').map((s) => s.stage)).toEqual([
      'selectItems',
      'submitScoringJob',
      'waitForJob',
      'collectResults',
    ]);
  });
});
