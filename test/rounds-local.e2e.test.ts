import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { LocalBackend } from '../activities/backends/local/local-backend';
import { cancelLocalJob, readLocalJobStatus } from '../activities/backends/local/runner/local-job';
import { LocalWorkspace } from '../activities/backends/local/workspace';
import { BatchClient } from '../client/batch-client';
import { statusQuery } from '../workflows/messages';
import type { BatchSummary } from '../workflows/summary';
import { countBy, fixture, ledgerRecords, numberedFiles, oddFileContent, readCalls, readRows, type Fixture } from './support/counting-script';
import { connectToSharedDevServer, uniqueTaskQueue } from './support/temporal-env';
import { PROJECT_SECRETS_FILE, createLocalHarness, runLocalBatch, type LocalBatchHarness } from './support/local-batch';

// Follow-up rounds, rescores and duplicate rows on the local backend, end to end: the real dev server, the real
// local backend and runner, and a Python entry script that logs every item each run() call is given.

let env: TestWorkflowEnvironment;

beforeAll(async () => {
  env = await connectToSharedDevServer();
});

afterAll(async () => {
  await env?.teardown();
});

function batchInput(f: Fixture, extra: Record<string, unknown> = {}, delaySeconds = 0): Record<string, unknown> {
  return {
    inputFolder: f.inputFolder,
    codeDirectory: f.codeDirectory,
    programArguments: ['--input_root', '${{inputs.input_data}}', '--calls_log', f.callsLog, '--delay', String(delaySeconds), '--fail_while', f.failWhile],
    processCount: 1,
    miniBatchSize: 2,
    maxRetries: 0,
    operatorRetryTimeout: 0,
    ...extra,
  };
}

describe('follow-up rounds and rescores on the local backend', () => {
  let harness: LocalBatchHarness;

  beforeEach(async () => {
    harness = await createLocalHarness(env);
  });

  test('canceled job finished by a follow-up job', async () => {
    const f = fixture(numberedFiles(30));
    const workflowId = uniqueTaskQueue('halfway');
    const jobFolder = new LocalWorkspace(harness.workspaceDir).jobDir(LocalWorkspace.jobNameFor(workflowId, 1));

    const summary = await harness.worker.runUntil(async () => {
      const handle = await env.client.workflow.start('batchScoring', {
        taskQueue: harness.config.taskQueue,
        workflowId,
        args: [batchInput(f, { followUpRounds: 1 }, 0.1)],
      });
      // Cancel the first job from outside the batch, as a person in Azure ML studio would, once a third is done.
      for (;;) {
        const status = existsSync(path.join(jobFolder, 'status.json')) ? await readLocalJobStatus(jobFolder) : undefined;
        if (status && status.progress.itemsSucceeded >= 10) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await cancelLocalJob(jobFolder);
      while ((await readLocalJobStatus(jobFolder)).state !== 'Canceled') await new Promise((resolve) => setTimeout(resolve, 100));
      const firstRoundPids = new Set(readCalls(f.callsLog).map((call) => call.pid));
      const result = (await handle.result()) as BatchSummary;
      return { result, firstRoundPids };
    });

    const { result, firstRoundPids } = summary;
    expect(result.outcome).toBe('scored');
    expect(result.jobs?.map((job) => job.status)).toEqual(['Canceled', 'Completed']);
    expect(result.ledger).toMatchObject({ scored: 30, failed: 0, duplicateRows: 0 });

    // Every item has exactly one row without an error: none was scored twice.
    const rows = readRows(result.resultsFile!);
    const successes = countBy(rows.filter((row) => row.error === null).map((row) => row.path));
    expect(successes.size).toBe(30);
    expect([...successes.values()].every((count) => count === 1)).toBe(true);

    // The follow-up job was given exactly the items the canceled job left without a row.
    const rounds = JSON.parse(readFileSync(path.join(result.outputLocation!, 'results-rounds.json'), 'utf8')) as {
      rounds: { round: number; rows: number }[];
    };
    const firstRoundRows = rows.slice(0, rounds.rounds[0].rows).map((row) => row.path);
    const secondRoundCalls = readCalls(f.callsLog).filter((call) => !firstRoundPids.has(call.pid)).map((call) => call.path);
    expect(firstRoundRows.length).toBeGreaterThanOrEqual(10);
    expect(firstRoundRows.length).toBeLessThan(30);
    expect(new Set(secondRoundCalls)).toEqual(new Set(Object.keys(numberedFiles(30)).filter((item) => !firstRoundRows.includes(item))));
    expect(result.jobs?.[1]?.items).toBe(30 - firstRoundRows.length);
  });

  test('without follow-up rounds, failed items stay failed and no second job is submitted', async () => {
    const f = fixture(numberedFiles(6, (index) => (index < 2 ? `corrupt ${index}` : `item ${index}`)));
    const summary = await runLocalBatch(env, harness, batchInput(f));
    expect(summary.jobs).toBeUndefined();
    expect(summary.ledger).toMatchObject({ scored: 4, failed: 2 });
    expect(summary.ledger!.failedByReason).toEqual({ 'row_error ValueError': 2 });
  });

  test('follow-up rounds stop at the configured count when items keep failing', async () => {
    const f = fixture(numberedFiles(6, (index) => (index < 2 ? `corrupt ${index}` : `item ${index}`)));
    const summary = await runLocalBatch(env, harness, batchInput(f, { followUpRounds: 2 }));
    expect(summary.jobs?.map((job) => job.items)).toEqual([6, 2, 2]);
    expect(summary.ledger).toMatchObject({ scored: 4, failed: 2, duplicateRows: 0 });
    const calls = countBy(readCalls(f.callsLog).map((call) => call.path));
    expect(calls.get('items/000.txt')).toBe(3);
    expect(calls.get('items/005.txt')).toBe(1);
  });

  test('follow-up job scores each item alone', async () => {
    // Items 0 to 2 make run() raise; item 3 shares a mini-batch with item 2 in the first job, so it fails there too.
    const f = fixture(numberedFiles(6, (index) => (index < 3 ? `raise ${index}` : `item ${index}`)));
    const summary = await runLocalBatch(env, harness, batchInput(f, { followUpRounds: 1 }));

    expect(summary.jobs?.map((job) => [job.status, job.items])).toEqual([
      ['Completed', 6],
      ['Completed', 4],
    ]);
    expect(summary.ledger).toMatchObject({ scored: 3, failed: 3, failedByReason: { 'exception ValueError': 3 } });
    const records = await ledgerRecords(summary.ledger!.ledgerFile);
    expect(records.find((record) => record.path === 'items/003.txt')?.state).toBe('scored');
    expect(records.find((record) => record.path === 'items/002.txt')?.reason?.message).toContain('items/002.txt');
  });

  test('failed follow-up job leaves its items failed', async () => {
    // The follow-up job holds only items that make run() raise, so no mini-batch of it succeeds and the job fails.
    const f = fixture(numberedFiles(4, (index) => (index < 2 ? `raise ${index}` : `item ${index}`)));
    const summary = await runLocalBatch(env, harness, batchInput(f, { followUpRounds: 2 }));

    expect(summary.outcome).toBe('scored');
    expect(summary.jobs?.map((job) => job.status)).toEqual(['Completed', 'Failed', 'Failed']);
    expect(summary.jobs?.[1]?.miniBatches).toBeUndefined();
    expect(summary.ledger).toMatchObject({ scored: 2, failed: 2, failedByReason: { 'exception ValueError': 2 } });
  });

  test('rescore of a cancelled batch uses its status', async () => {
    const f = fixture(numberedFiles(8, (index) => (index < 2 ? `flaky ${index}` : `item ${index}`)));
    writeFileSync(f.failWhile, 'fail the flaky items');
    const client = BatchClient.fromClient(env.client, harness.config);
    const workflowId = uniqueTaskQueue('cancelled');

    const rescored = await harness.worker.runUntil(async () => {
      // The follow-up job is slow, so the batch is cancelled while it runs, after the first job's rows were collected.
      const handle = await env.client.workflow.start('batchScoring', {
        taskQueue: harness.config.taskQueue,
        workflowId,
        args: [{ ...batchInput(f, { followUpRounds: 1 }), programArguments: [...(batchInput(f).programArguments as string[]), '--slow_again', '3'] }],
      });
      for (;;) {
        const status = await handle.query(statusQuery).catch(() => undefined);
        if (status?.currentStage === 'waitForJob' && status.itemsSelected === 2) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await handle.cancel();
      await handle.result().catch(() => undefined);
      rmSync(f.failWhile);
      const started = await client.rescore(workflowId);
      expect(started?.workflowId).toBe(`${workflowId}-rescore-1`);
      return client.result(started!.workflowId);
    });

    expect(rescored).toMatchObject({ outcome: 'scored', itemsScored: 8, itemsFailed: 0 });
    expect(rescored.jobs?.map((job) => job.items)).toEqual([2]);
  });

  test('rescore scores only failed items', async () => {
    const f = fixture(numberedFiles(12, (index) => (index % 4 === 0 ? `flaky ${index}` : `item ${index}`)));
    writeFileSync(f.failWhile, 'fail the flaky items');
    const client = BatchClient.fromClient(env.client, harness.config);
    const { first, started, rescored } = await harness.worker.runUntil(async () => {
      const first = (await env.client.workflow.execute('batchScoring', {
        taskQueue: harness.config.taskQueue,
        workflowId: uniqueTaskQueue('flaky'),
        args: [batchInput(f)],
      })) as BatchSummary;
      expect(first.ledger).toMatchObject({ scored: 9, failed: 3 });
      // A rescore while the cause remains fails the same items again; the rescore of that rescore is numbered on
      // from the first batch.
      const again = await client.rescore(first.workflowId);
      expect((await client.result(again!.workflowId)).ledger).toMatchObject({ scored: 9, failed: 3 });
      rmSync(f.failWhile);
      const started = await client.rescore(again!.workflowId);
      return { first, started, rescored: await client.result(started!.workflowId) };
    });
    expect(started).toMatchObject({ workflowId: `${first.workflowId}-rescore-2`, failedItems: 3 });

    expect(rescored).toMatchObject({ outcome: 'scored', rescoreOf: `${first.workflowId}-rescore-1`, itemsTotal: 12, itemsScored: 12, itemsFailed: 0 });
    expect(rescored.outputLocation).toBe(first.outputLocation);
    expect(rescored.jobs?.map((job) => job.items)).toEqual([3]);
    expect(rescored.ledger).toMatchObject({ scored: 12, failed: 0, duplicateRows: 0 });

    const calls = countBy(readCalls(f.callsLog).map((call) => call.path));
    for (const [item, count] of calls) expect([item, count]).toEqual([item, Number(item.slice(6, 9)) % 4 === 0 ? 3 : 1]);
    expect(readRows(rescored.resultsFile!)).toHaveLength(18);

    const records = await ledgerRecords(rescored.ledger!.ledgerFile);
    expect(records.map((record) => record.state)).toEqual(Array(12).fill('scored'));

    // Nothing is left to rescore, so a second rescore starts nothing.
    await expect(client.rescore(started!.workflowId)).resolves.toBeUndefined();
  });

  test('rescore refuses a folder that changed since the batch scored it', async () => {
    const f = fixture(numberedFiles(4, (index) => (index === 0 ? `flaky ${index}` : `item ${index}`)));
    writeFileSync(f.failWhile, 'fail');
    const client = BatchClient.fromClient(env.client, harness.config);
    const { first, failure } = await harness.worker.runUntil(async () => {
      const first = (await env.client.workflow.execute('batchScoring', {
        taskQueue: harness.config.taskQueue,
        workflowId: uniqueTaskQueue('changed'),
        args: [batchInput(f)],
      })) as BatchSummary;
      writeFileSync(path.join(f.inputFolder, 'items', 'new.txt'), 'added later');
      const started = await client.rescore(first.workflowId);
      const failure = await client.result(started!.workflowId).then(
        () => '',
        (error: Error) => error.message,
      );
      return { first, failure };
    });
    expect(failure).toContain('the folder changed since');
    expect(failure).toContain(first.dataset!.version);
  });

  test('odd files get one ledger state each', async () => {
    const names = [
      'plain.txt',
      'with space.txt',
      'hash#tag.txt',
      'per%cent.txt',
      'amp&ersand.txt',
      'question?.txt',
      'caf\u00e9.txt',
      'cafe\u0301.txt',
      '\u65e5\u672c\u8a9e.txt',
      'empty.txt',
      'corrupt.txt',
    ];
    const f = fixture(Object.fromEntries(names.map((name) => [`odd/${name}`, oddFileContent(name)])));
    const summary = await runLocalBatch(env, harness, batchInput(f));

    const records = await ledgerRecords(summary.ledger!.ledgerFile);
    expect(records.map((record) => record.path).sort()).toEqual(names.map((name) => `odd/${name}`).sort());
    expect(new Set(records.map((record) => record.path)).size).toBe(names.length);
    expect(summary.ledger!.scored + summary.ledger!.failed + summary.ledger!.excluded).toBe(names.length);
    expect(records.find((record) => record.path === 'odd/corrupt.txt')).toMatchObject({ state: 'failed', reason: { kind: 'row_error' } });
    expect(records.find((record) => record.path === 'odd/empty.txt')?.state).toBe('scored');
    // The names that tools may encode twice are reported before the job, without stopping the batch.
    expect(summary.inputWarnings?.map((warning) => warning.code)).toEqual(
      expect.arrayContaining(['whitespace_in_name', 'url_delimiter_in_name', 'percent_in_name', 'non_ascii_name', 'unicode_normalization_collision']),
    );
    expect(summary.ledger!.failureExamples).toEqual([expect.objectContaining({ path: 'odd/corrupt.txt', reason: 'row_error ValueError' })]);
  });
});

describe('duplicate rows on the local backend', () => {
  test('repeated mini-batch counted as duplicates', async () => {
    const workspaceDir = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-ws-'));
    // The local runner journals each mini-batch once; this fault makes it run mini-batch 1 twice, as Azure ML can.
    const repeating = await createLocalHarness(env, { localWorkspaceDir: workspaceDir }, {
      local: new LocalBackend({ workspaceDir, secretsFile: PROJECT_SECRETS_FILE, faults: { repeatMiniBatches: [1] } }),
    });
    const f = fixture(numberedFiles(8));
    const summary = await runLocalBatch(env, repeating, batchInput(f));

    expect(readRows(summary.resultsFile!)).toHaveLength(10);
    expect(summary.ledger).toMatchObject({ scored: 8, failed: 0, duplicateRows: 2 });
    const calls = countBy(readCalls(f.callsLog).map((call) => call.path));
    expect(calls.get('items/002.txt')).toBe(2);
    expect(calls.get('items/003.txt')).toBe(2);
    expect(calls.get('items/000.txt')).toBe(1);
  });
});
