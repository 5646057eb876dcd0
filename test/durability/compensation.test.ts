import { CancelledFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { StageError } from '../../activities/errors';
import { statusQuery } from '../../workflows/messages';
import type { CompensationRecord } from '../../workflows/summary';
import { createTimeSkippingEnv } from '../support/temporal-env';
import { createFakeWorker, failureDetails, failureOf, scheduledActivities, startBatch, waitForStatus } from './helpers';
import { ScriptedBackend } from './scripted-backend';

// The saga of batchScoring on the time-skipping test server: which undo steps run, in which order, with which
// inputs, and how their outcome is reported. The real activities run over a scripted in-memory backend.

let env: TestWorkflowEnvironment;

beforeAll(async () => {
  env = await createTimeSkippingEnv();
});

afterAll(async () => {
  await env?.teardown();
});

/** A batch whose job fails its error threshold, with no operator wait, so it fails for good and compensates. */
const failingJob = (backend: ScriptedBackend): void => {
  backend.failures.waitForJob = [new StageError('JobFailed', 'job job-fake-1 failed: 12 items failed, above errorThreshold 5')];
};

describe('compensation of a failed batch', () => {
  test('default keeps assets, cancels job', async () => {
    const backend = new ScriptedBackend();
    failingJob(backend);
    const { worker, taskQueue } = await createFakeWorker(env, backend);

    const failure = await worker.runUntil(async () => failureOf((await startBatch(env, taskQueue, { inputFolder: '/fake/data', operatorRetryTimeout: 0 })).result()));

    expect(failure.cause?.message).toBe('stage waitForJob failed: job job-fake-1 failed: 12 items failed, above errorThreshold 5');
    expect(backend.order).toEqual(['cancelScoringJob']);
    expect(backend.inputs.cancelScoringJob).toEqual([{ backend: 'local', workflowId: taskQueue, submission: 1 }]);
    const compensations = failureDetails(failure).compensations as CompensationRecord[];
    expect(compensations.map((step) => [step.action, step.state])).toEqual([
      ['cancelScoringJob', 'completed'],
      ['deleteDatasetVersion', 'skipped'],
      ['deleteDatastore', 'skipped'],
    ]);
    expect(compensations[1].detail).toBe('kept: assetsOnFailure is "keep"');
  });

  test('remove_created deletes created assets newest first', async () => {
    const backend = new ScriptedBackend();
    failingJob(backend);
    const { worker, taskQueue } = await createFakeWorker(env, backend);

    const failure = await worker.runUntil(async () =>
      failureOf((await startBatch(env, taskQueue, { inputFolder: '/fake/data', operatorRetryTimeout: 0, assetsOnFailure: 'remove_created' })).result()),
    );

    expect(backend.order).toEqual(['cancelScoringJob', 'deleteDatasetVersion', 'deleteDatastore']);
    expect(backend.inputs.deleteDatasetVersion).toEqual([{ backend: 'local', datasetName: 'data-fake', version: 'v1' }]);
    expect(backend.inputs.deleteDatastore).toEqual([{ backend: 'local', datastoreName: 'local_fake', root: '/fake/data' }]);
    const compensations = failureDetails(failure).compensations as CompensationRecord[];
    expect(compensations.every((step) => step.state === 'completed')).toBe(true);
  });

  test('preexisting assets are never deleted', async () => {
    const backend = new ScriptedBackend();
    backend.createsAssets = false;
    failingJob(backend);
    const { worker, taskQueue } = await createFakeWorker(env, backend);

    await worker.runUntil(async () =>
      failureOf((await startBatch(env, taskQueue, { inputFolder: '/fake/data', operatorRetryTimeout: 0, assetsOnFailure: 'remove_created' })).result()),
    );

    expect(backend.order).toEqual(['cancelScoringJob']);
    expect(backend.calls.deleteDatasetVersion).toBe(0);
    expect(backend.calls.deleteDatastore).toBe(0);
  });

  test('failure before submit deletes datastore', async () => {
    const backend = new ScriptedBackend();
    backend.failures.registerDataset = [new StageError('PermissionDenied', 'listing /fake/data was denied')];
    const { worker, taskQueue } = await createFakeWorker(env, backend);

    const failure = await worker.runUntil(async () =>
      failureOf((await startBatch(env, taskQueue, { inputFolder: '/fake/data', operatorRetryTimeout: 0, assetsOnFailure: 'remove_created' })).result()),
    );

    expect(failure.cause?.message).toBe('stage registerDataset failed: listing /fake/data was denied');
    expect(backend.order).toEqual(['deleteDatastore']);
  });

  test('failed undo step reported, rest run', async () => {
    const backend = new ScriptedBackend();
    failingJob(backend);
    backend.failures.cancelScoringJob = [new StageError('PermissionDenied', 'cancel job job-fake-1 was denied (403); grant the role')];
    const { worker, taskQueue } = await createFakeWorker(env, backend);

    const failure = await worker.runUntil(async () =>
      failureOf((await startBatch(env, taskQueue, { inputFolder: '/fake/data', operatorRetryTimeout: 0, assetsOnFailure: 'remove_created' })).result()),
    );

    expect(failure.cause?.message).toContain('stage waitForJob failed: job job-fake-1 failed');
    expect(failure.cause?.message).toContain('undoing it failed: cancelScoringJob job-fake-1 (cancel job job-fake-1 was denied (403); grant the role)');
    expect(backend.order).toEqual(['cancelScoringJob', 'deleteDatasetVersion', 'deleteDatastore']);
    const compensations = failureDetails(failure).compensations as CompensationRecord[];
    expect(compensations[0].state).toBe('failed');
  });

  test('status query lists undo steps', async () => {
    const backend = new ScriptedBackend();
    failingJob(backend);
    const { worker, taskQueue } = await createFakeWorker(env, backend);

    const status = await worker.runUntil(async () => {
      const handle = await startBatch(env, taskQueue, { inputFolder: '/fake/data', operatorRetryTimeout: 0 });
      await failureOf(handle.result());
      return handle.query(statusQuery);
    });

    expect(status.state).toBe('failed');
    expect(status.failure).toContain('stage waitForJob failed');
    expect(status.compensations.map((step) => step.action)).toEqual(['cancelScoringJob', 'deleteDatasetVersion', 'deleteDatastore']);
    expect(status.stages.find((stage) => stage.stage === 'waitForJob')?.state).toBe('failed');
  });
});

describe('compensation of a cancelled batch', () => {
  test('cancel during operator wait', async () => {
    const backend = new ScriptedBackend();
    backend.failures.checkVaultAccess = [new StageError('NotFound', 'secret "x" not found')];
    const { worker, taskQueue } = await createFakeWorker(env, backend);

    const { failure, history, status } = await worker.runUntil(async () => {
      const handle = await startBatch(env, taskQueue, { inputFolder: '/fake/data' });
      await waitForStatus(handle, (batch) => batch.pendingFailure !== undefined, 'a failure waiting for an operator');
      await handle.cancel();
      const outcome = await failureOf(handle.result());
      return { failure: outcome, history: await scheduledActivities(handle), status: await handle.query(statusQuery) };
    });

    expect(failure.cause).toBeInstanceOf(CancelledFailure);
    expect(status.state).toBe('cancelled');
    expect(status.pendingFailure).toBeUndefined();
    expect(status.stages.find((stage) => stage.stage === 'checkVaultAccess')?.state).toBe('cancelled');
    // Nothing was created before the vault stage, so the saga has no step to run.
    expect(history).toEqual(['authenticate', 'checkVaultAccess']);
  });

  test('cancel after submit cancels job', async () => {
    const backend = new ScriptedBackend();
    let release = false;
    backend.jobDone = () => Promise.resolve(release);
    const { worker, taskQueue } = await createFakeWorker(env, backend);

    const failure = await worker.runUntil(async () => {
      const handle = await startBatch(env, taskQueue, { inputFolder: '/fake/data' });
      await waitForStatus(handle, (status) => status.currentStage === 'waitForJob', 'the wait stage');
      await handle.cancel();
      const outcome = await failureOf(handle.result());
      release = true;
      return outcome;
    });

    expect(failure.cause).toBeInstanceOf(CancelledFailure);
    expect(backend.order).toEqual(['cancelScoringJob']);
  });

  test('cancel with failed undo fails', async () => {
    const backend = new ScriptedBackend();
    // The submit fails in a way an operator could fix, so the batch waits; its job undo step is registered already.
    backend.failures.submitScoringJob = [new StageError('NotFound', 'codeDirectory /code does not exist; check codeDirectory')];
    backend.failures.cancelScoringJob = [new StageError('PermissionDenied', 'cancel was denied (403)')];
    const { worker, taskQueue } = await createFakeWorker(env, backend);

    const failure = await worker.runUntil(async () => {
      const handle = await startBatch(env, taskQueue, { inputFolder: '/fake/data' });
      await waitForStatus(handle, (status) => status.pendingFailure?.stage === 'submitScoringJob', 'a failed submit waiting');
      await handle.cancel();
      return failureOf(handle.result());
    });

    expect(failure.cause).not.toBeInstanceOf(CancelledFailure);
    expect((failure.cause as { type?: string }).type).toBe('CompensationFailed');
    expect(failure.cause?.message).toBe(
      'batch was cancelled, but undoing it failed: cancelScoringJob submission 1 (cancel was denied (403)); clean these up by hand',
    );
    expect(failure.cause?.cause).toBeInstanceOf(CancelledFailure);
  });
});
