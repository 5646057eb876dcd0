import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ActivityFailure, ApplicationFailure, WorkflowFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { readScoringRate } from '../activities/ledger/scoring-rate';
import type { DatasetRef } from '../activities/types';
import { projectRoot } from '../common/project-paths';
import { SAMPLE_FOLDER, createLocalHarness, readRows, runLocalBatch, type LocalBatchHarness } from './support/local-batch';
import { connectToSharedDevServer, uniqueTaskQueue } from './support/temporal-env';

// The register-dataset stage's input checks in real local batches: the real dev server, the real local backend and
// the bundled scoring package.

let env: TestWorkflowEnvironment;
let harness: LocalBatchHarness;

beforeAll(async () => {
  env = await connectToSharedDevServer();
});

afterAll(async () => {
  await env?.teardown();
});

beforeEach(async () => {
  harness = await createLocalHarness(env);
});

function samplePng(): string {
  const [label] = readdirSync(SAMPLE_FOLDER).sort();
  const [file] = readdirSync(path.join(SAMPLE_FOLDER, label)).sort();
  return path.join(SAMPLE_FOLDER, label, file);
}

/** Creates a folder holding a copy of one sample image under each of `names`. */
function folderWith(names: readonly string[]): string {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-checks-'));
  const source = samplePng();
  for (const name of names) {
    mkdirSync(path.dirname(path.join(folder, name)), { recursive: true });
    copyFileSync(source, path.join(folder, name));
  }
  return folder;
}

/** Returns the result of the batch's registerDataset activity, read from its workflow history. */
async function registeredDataset(workflowId: string): Promise<DatasetRef> {
  const history = await env.client.workflow.getHandle(workflowId).fetchHistory();
  const events = history.events ?? [];
  const scheduled = events.find((event) => event.activityTaskScheduledEventAttributes?.activityType?.name === 'registerDataset');
  expect(scheduled).toBeDefined();
  const completed = events.find(
    (event) => String(event.activityTaskCompletedEventAttributes?.scheduledEventId ?? '') === String(scheduled?.eventId ?? ''),
  );
  const data = completed?.activityTaskCompletedEventAttributes?.result?.payloads?.[0]?.data;
  expect(data).toBeDefined();
  return JSON.parse(Buffer.from(data!).toString('utf8')) as DatasetRef;
}

/** Returns the failure of the activity behind a failed batch: its type and message. */
async function activityFailureOf(promise: Promise<unknown>): Promise<{ message: string; type?: string; workflowMessage: string }> {
  try {
    await promise;
  } catch (error) {
    if (!(error instanceof WorkflowFailedError)) throw error;
    let cause: unknown = error.cause;
    while (cause instanceof Error && !(cause instanceof ActivityFailure)) cause = cause.cause;
    const application = cause instanceof ActivityFailure ? cause.cause : undefined;
    if (!(application instanceof ApplicationFailure)) throw new Error(`expected an activity failure, got ${String(error.cause)}`, { cause: error });
    return { message: application.message, ...(application.type ? { type: application.type } : {}), workflowMessage: error.cause?.message ?? '' };
  }
  throw new Error('expected the batch to fail');
}

describe('input checks on the local backend', () => {
  test('reserved program argument fails registration', async () => {
    const folder = folderWith(['0/a.png', '1/b.png']);

    const failure = await activityFailureOf(
      runLocalBatch(env, harness, {
        inputFolder: folder,
        programArguments: ['--input_root', '${{inputs.input_data}}', '--mini_batch_size', '4'],
        operatorRetryTimeout: 0,
      }),
    );

    expect(failure.type).toBe('InvalidInput');
    expect(failure.message).toMatch(new RegExp(`^input checks of ${folder} found 1 problem, so no dataset version was registered`));
    expect(failure.message).toContain('program arguments --mini_batch_size are flags that the Azure ML parallel runtime reads');
    expect(failure.message).toContain('set miniBatchSize in the workflow input instead of --mini_batch_size');
    expect(failure.workflowMessage).toMatch(/^stage registerDataset failed: input checks of /);

    // No dataset version and no job: the datasets folder contains no version, and no job folder was created.
    const datasets = path.join(harness.workspaceDir, 'datasets');
    const versions = existsSync(datasets) ? readdirSync(datasets).flatMap((name) => readdirSync(path.join(datasets, name))) : [];
    expect(versions).toEqual([]);
    expect(existsSync(path.join(harness.workspaceDir, 'jobs'))).toBe(false);
  });

  test('unsafe names warn while the batch scores', async () => {
    const names = ['caf\u00e9.png', 'cafe\u0301.png', '#hash.png', '100%.png', 'plain.png'];
    const folder = folderWith(names);
    const workflowId = uniqueTaskQueue('checks-names');

    const summary = await runLocalBatch(env, harness, { inputFolder: folder }, workflowId);

    expect(summary.outcome).toBe('scored');
    expect(summary.itemsScored).toBe(names.length);
    expect(readRows(summary.resultsFile!).map((row) => row.path).sort()).toEqual([...names].sort());

    const dataset = await registeredDataset(workflowId);
    const warnings = new Map((dataset.inputWarnings ?? []).map((warning) => [warning.code, warning]));
    const collision = warnings.get('unicode_normalization_collision');
    expect(collision).toMatchObject({ severity: 'warning', count: 1 });
    expect(collision?.examples).toHaveLength(1);
    expect(collision?.examples[0]).toContain('"caf\u00e9.png" (U+00E9)');
    expect(collision?.examples[0]).toContain('"cafe\u0301.png" (U+0301)');
    expect(warnings.get('decomposed_unicode_name')?.examples).toEqual(['cafe\u0301.png']);
    expect(warnings.get('url_delimiter_in_name')?.examples).toEqual(['#hash.png']);
    expect(warnings.get('percent_in_name')?.examples).toEqual(['100%.png']);
    expect([...warnings.values()].every((warning) => warning.severity === 'warning')).toBe(true);
  });

  test('clean folder has no warnings', async () => {
    const workflowId = uniqueTaskQueue('checks-clean');

    const summary = await runLocalBatch(env, harness, { inputFolder: folderWith(['0/a.png', '1/b.png']) }, workflowId);

    expect(summary.outcome).toBe('scored');
    expect((await registeredDataset(workflowId)).inputWarnings).toBeUndefined();
  });

  test('file too large for the measured rate warns', async () => {
    // Without a measured rate the sizes are not checked.
    const firstId = uniqueTaskQueue('checks-rate');
    const first = await runLocalBatch(env, harness, { inputFolder: folderWith(['0/a.png', '0/b.png', '1/c.png']) }, firstId);
    expect((await registeredDataset(firstId)).inputWarnings).toBeUndefined();

    // The first batch's completed job recorded its rate for this entry script.
    const key = { backend: 'local' as const, codeDirectory: path.join(projectRoot(), 'scoring'), entryScript: 'score.py' };
    const measured = await readScoringRate(harness.workspaceDir, key);
    expect(measured).toBeDefined();
    expect(measured!.bytesPerSecond).toBeGreaterThan(0);
    expect(measured!.jobName).toBe(first.jobName);

    // A file that needs twice the timeout at the measured rate; the scoring script reports it as unreadable.
    const runInvocationTimeout = 5;
    const folder = folderWith(['0/a.png']);
    const largeSize = Math.ceil(measured!.bytesPerSecond * runInvocationTimeout * 2);
    writeFileSync(path.join(folder, 'large.bin'), randomBytes(largeSize));
    const secondId = uniqueTaskQueue('checks-rate');

    // A worker runs one batch, so the second batch gets a new worker over the same workspace.
    const secondHarness = await createLocalHarness(env, { localWorkspaceDir: harness.workspaceDir });
    const second = await runLocalBatch(env, secondHarness, { inputFolder: folder, runInvocationTimeout }, secondId);

    expect(second.outcome).toBe('scored');
    const oversized = (await registeredDataset(secondId)).inputWarnings?.find((warning) => warning.code === 'file_exceeds_timeout');
    expect(oversized).toMatchObject({ severity: 'warning', count: 1, examples: ['large.bin'] });
    expect(oversized?.message).toContain(`runInvocationTimeout ${runInvocationTimeout} s`);
    expect(oversized?.message).toContain(`the largest, large.bin, has`);
  });
});
