import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { StageError } from '../../activities/errors';
import { abortSignal, retrySignal, statusQuery } from '../../workflows/messages';
import type { BatchSummary } from '../../workflows/summary';
import { createTimeSkippingEnv } from '../support/temporal-env';
import { createFakeWorker, failureDetails, failureOf, scheduledActivities, startBatch, waitForStatus } from './helpers';
import { ScriptedBackend } from './scripted-backend';

// Operator retries of failed stages on the time-skipping test server: a fixable failure waits for a `retry` or
// `abort` signal up to `operatorRetryTimeout`, finished stages never run again, and corrections are validated.

let env: TestWorkflowEnvironment;

beforeAll(async () => {
  env = await createTimeSkippingEnv();
});

afterAll(async () => {
  await env?.teardown();
});

/** What the built-in `__temporal_workflow_metadata` query returns, as far as these tests read it. */
interface WorkflowMetadata {
  definition: {
    signalDefinitions: Array<{ name: string; description?: string }>;
    queryDefinitions: Array<{ name: string; description?: string }>;
  };
  currentDetails: string;
}

const missingSecret = (): StageError => new StageError('NotFound', 'secret "no-such-secret" not found in the local secret source');

describe('operator retry', () => {
  test('corrected retry resumes failed stage', async () => {
    const backend = new ScriptedBackend();
    backend.failures.checkVaultAccess = [missingSecret()];
    const { worker, taskQueue } = await createFakeWorker(env, backend);

    const { pending, summary, activities } = await worker.runUntil(async () => {
      const handle = await startBatch(env, taskQueue, { inputFolder: '/fake/data', secretNames: ['no-such-secret'] });
      const waiting = await waitForStatus(handle, (status) => status.pendingFailure !== undefined, 'a failure waiting for an operator');
      await handle.signal(retrySignal, { secretNames: ['model-signing-key'] });
      return { pending: waiting, summary: (await handle.result()) as BatchSummary, activities: await scheduledActivities(handle) };
    });

    expect(pending.state).toBe('awaiting_operator');
    expect(pending.pendingFailure?.stage).toBe('checkVaultAccess');
    expect(pending.pendingFailure?.failureType).toBe('NotFound');
    expect(pending.pendingFailure?.retryFields).toContain('secretNames');
    expect(pending.stages.find((stage) => stage.stage === 'checkVaultAccess')?.state).toBe('awaiting_operator');
    expect(summary.outcome).toBe('scored');
    expect(backend.calls.authenticate).toBe(1);
    expect(backend.calls.checkVaultAccess).toBe(2);
    expect(activities.filter((name) => name === 'checkVaultAccess')).toHaveLength(2);
    expect(summary.stages.find((stage) => stage.stage === 'checkVaultAccess')?.operatorRetries).toBe(1);
  });

  test('correction of foreign field rejected', async () => {
    const backend = new ScriptedBackend();
    backend.failures.checkVaultAccess = [missingSecret()];
    const { worker, taskQueue } = await createFakeWorker(env, backend);

    const { rejected, summary } = await worker.runUntil(async () => {
      const handle = await startBatch(env, taskQueue, { inputFolder: '/fake/data' });
      await waitForStatus(handle, (status) => status.pendingFailure !== undefined, 'a failure waiting for an operator');
      await handle.signal(retrySignal, { miniBatchSize: 5 });
      const afterRejection = await waitForStatus(handle, (status) => status.pendingFailure?.rejectedRetry !== undefined, 'a rejected retry');
      await handle.signal(retrySignal);
      return { rejected: afterRejection, summary: (await handle.result()) as BatchSummary };
    });

    expect(rejected.state).toBe('awaiting_operator');
    expect(rejected.pendingFailure?.rejectedRetry?.message).toContain('miniBatchSize = 5 is not allowed; expected no change when retrying stage checkVaultAccess');
    expect(summary.outcome).toBe('scored');
    expect(backend.calls.checkVaultAccess).toBe(2);
  });

  test('invalid corrected value is rejected', async () => {
    const backend = new ScriptedBackend();
    backend.failures.collectResults = [new StageError('Conflict', 'results file /r/rows.txt already exists with other content')];
    const { worker, taskQueue } = await createFakeWorker(env, backend);

    const { rejected, summary } = await worker.runUntil(async () => {
      const handle = await startBatch(env, taskQueue, { inputFolder: '/fake/data' });
      await waitForStatus(handle, (status) => status.pendingFailure?.stage === 'collectResults', 'a failed collect waiting');
      await handle.signal(retrySignal, { resultsFolder: 'relative/path' });
      const afterRejection = await waitForStatus(handle, (status) => status.pendingFailure?.rejectedRetry !== undefined, 'a rejected retry');
      await handle.signal(retrySignal, { resultsFolder: '/fresh/results' });
      return { rejected: afterRejection, summary: (await handle.result()) as BatchSummary };
    });

    expect(rejected.pendingFailure?.rejectedRetry?.message).toContain('resultsFolder = "relative/path" is not allowed');
    expect(summary.outcome).toBe('scored');
    expect(backend.calls.collectResults).toBe(2);
    expect(backend.calls.submitScoringJob).toBe(1);
    expect(backend.calls.waitForJob).toBe(1);
  });

  test('failed job retry submits new job', async () => {
    const backend = new ScriptedBackend();
    backend.failures.waitForJob = [new StageError('JobFailed', 'job job-fake-1 failed: 12 items failed, above errorThreshold 5')];
    const { worker, taskQueue } = await createFakeWorker(env, backend);

    const { pending, summary } = await worker.runUntil(async () => {
      const handle = await startBatch(env, taskQueue, { inputFolder: '/fake/data', errorThreshold: 5 });
      const waiting = await waitForStatus(handle, (status) => status.pendingFailure !== undefined, 'a failed job waiting');
      await handle.signal(retrySignal, { errorThreshold: 20 });
      return { pending: waiting, summary: (await handle.result()) as BatchSummary };
    });

    expect(pending.pendingFailure?.retrySubmitsNewJob).toBe(true);
    expect(pending.pendingFailure?.retryFields).toContain('errorThreshold');
    expect(summary.outcome).toBe('scored');
    expect(backend.submissions.map((submit) => submit.submission)).toEqual([1, 2]);
    expect(backend.submissions.map((submit) => submit.settings.errorThreshold)).toEqual([5, 20]);
    expect(summary.jobName).toBe('job-fake-2');
    expect(backend.calls.registerDataset).toBe(1);
  });

  test('abort fails the batch and compensates', async () => {
    const backend = new ScriptedBackend();
    backend.failures.waitForJob = [new StageError('JobFailed', 'job job-fake-1 failed: init() raised')];
    const { worker, taskQueue } = await createFakeWorker(env, backend);

    const failure = await worker.runUntil(async () => {
      const handle = await startBatch(env, taskQueue, { inputFolder: '/fake/data' });
      await waitForStatus(handle, (status) => status.pendingFailure !== undefined, 'a failed job waiting');
      await handle.signal(abortSignal, { reason: 'model needs retraining' });
      return failureOf(handle.result());
    });

    expect(failure.cause?.message).toBe('stage waitForJob failed: job job-fake-1 failed: init() raised');
    const details = failureDetails(failure);
    expect(details.resolution).toBe('operator_aborted');
    expect(details.abortReason).toBe('model needs retraining');
    expect(backend.order).toEqual(['cancelScoringJob']);
  });

  test('deadline without signal fails batch', async () => {
    const backend = new ScriptedBackend();
    backend.failures.ensureDatastore = [new StageError('Conflict', 'datastore local_fake is registered with another root')];
    const { worker, taskQueue } = await createFakeWorker(env, backend);

    const { failure, status } = await worker.runUntil(async () => {
      const handle = await startBatch(env, taskQueue, { inputFolder: '/fake/data', operatorRetryTimeout: 3600 });
      // Awaiting the result lets the test server skip the hour.
      const outcome = await failureOf(handle.result());
      return { failure: outcome, status: await handle.query(statusQuery) };
    });

    expect(failure.cause?.message).toBe('stage ensureDatastore failed: datastore local_fake is registered with another root');
    expect(failureDetails(failure).resolution).toBe('operator_timed_out');
    expect(status.state).toBe('failed');
    expect(status.pendingFailure).toBeUndefined();
    expect(status.stages.find((stage) => stage.stage === 'ensureDatastore')?.state).toBe('failed');
    expect(backend.calls.ensureDatastore).toBe(1);
  });

  test('exhausted retries wait for an operator', async () => {
    const backend = new ScriptedBackend();
    backend.failures.authenticate = Array.from({ length: 5 }, () => new Error('connection reset'));
    const { worker, taskQueue } = await createFakeWorker(env, backend);

    const { pending, summary } = await worker.runUntil(async () => {
      const handle = await startBatch(env, taskQueue, { inputFolder: '/fake/data' });
      // Queries keep the server's clock still; sleeping lets it skip the retries' backoff of 30 s in all.
      await env.sleep('1 minute');
      const waiting = await waitForStatus(handle, (status) => status.pendingFailure !== undefined, 'exhausted retries waiting');
      await handle.signal(retrySignal);
      return { pending: waiting, summary: (await handle.result()) as BatchSummary };
    });

    expect(pending.pendingFailure?.failureType).toBe('Transient');
    expect(backend.calls.authenticate).toBe(6);
    expect(summary.outcome).toBe('scored');
  });

  test('unfixable failure fails at once', async () => {
    const backend = new ScriptedBackend();
    backend.failures.authenticate = [new StageError('NotAvailable', 'backend "local" is not available on this worker')];
    const { worker, taskQueue } = await createFakeWorker(env, backend);

    const { failure, history } = await worker.runUntil(async () => {
      const handle = await startBatch(env, taskQueue, { inputFolder: '/fake/data' });
      const outcome = await failureOf(handle.result());
      return { failure: outcome, history: await handle.fetchHistory() };
    });

    expect(failureDetails(failure).resolution).toBe('not_fixable');
    const timers = (history.events ?? []).filter((event) => event.timerStartedEventAttributes);
    expect(timers).toHaveLength(0);
  });

  test('UI metadata lists signals and query', async () => {
    const backend = new ScriptedBackend();
    backend.failures.checkVaultAccess = [missingSecret()];
    const { worker, taskQueue } = await createFakeWorker(env, backend);

    const metadata = await worker.runUntil(async () => {
      const handle = await startBatch(env, taskQueue, { inputFolder: '/fake/data' });
      await waitForStatus(handle, (status) => status.pendingFailure !== undefined, 'a failure waiting for an operator');
      // The query the Temporal UI runs to fill its signal form, query list and current details.
      const result = await handle.query<WorkflowMetadata>('__temporal_workflow_metadata');
      await handle.signal(abortSignal);
      await failureOf(handle.result());
      return result;
    });

    const signals = metadata.definition.signalDefinitions.map((signal) => signal.name).sort();
    expect(signals).toEqual(['abort', 'retry']);
    const retry = metadata.definition.signalDefinitions.find((signal) => signal.name === 'retry');
    expect(retry?.description).toContain('Runs the failed stage again');
    const abort = metadata.definition.signalDefinitions.find((signal) => signal.name === 'abort');
    expect(abort?.description).toContain('Gives up on the failed stage');
    expect(metadata.definition.queryDefinitions.map((query) => query.name)).toContain('status');
    expect(metadata.currentDetails).toContain('**Waiting for an operator**: stage `checkVaultAccess` failed (NotFound)');
  });

  test('zero operatorRetryTimeout fails at once', async () => {
    const backend = new ScriptedBackend();
    backend.failures.checkVaultAccess = [missingSecret()];
    const { worker, taskQueue } = await createFakeWorker(env, backend);

    const failure = await worker.runUntil(async () => failureOf((await startBatch(env, taskQueue, { inputFolder: '/fake/data', operatorRetryTimeout: 0 })).result()));

    expect(failureDetails(failure).resolution).toBe('no_operator_wait');
    const activityFailure = failure.cause?.cause as Error | undefined;
    const cause = activityFailure?.cause;
    expect(cause).toBeInstanceOf(ApplicationFailure);
    expect((cause as ApplicationFailure).type).toBe('NotFound');
  });
});
