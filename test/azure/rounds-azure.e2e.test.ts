import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { BatchClient } from '../../client/batch-client';
import { loadConfig } from '../../common/config';
import { projectRoot } from '../../common/project-paths';
import type { BatchScoringInput } from '../../workflows/input';
import type { BatchSummary } from '../../workflows/summary';
import { describeWithSpec } from '../aml-emulator/emulator-harness';
import { startAmlEmulator, type AmlEmulator } from '../support/aml-emulator';
import { CONTAINER, DATASTORE_SECRET, azureBatchInput, createAzureBackend, createAzureWorker, runAzureBatch, type AzureTestServers } from '../support/azure-batch';
import { testKeyVaultFromEnvironment } from '../support/azure-test-servers';
import { startAzurite, type AzuriteServer } from '../support/azurite';
import { countBy, fixture, ledgerRecords, numberedFiles, oddFileContent, readCalls, readRows, type Fixture } from '../support/counting-script';
import type { TestKeyVault } from '../support/key-vault';
import { connectToSharedDevServer, uniqueTaskQueue } from '../support/temporal-env';

// Follow-up rounds, rescores and duplicate rows on the Azure backend, against the Azure ML emulator, Azurite and
// the Key Vault test double. The same counting entry script as the local tests logs each item run() is given.

let env: TestWorkflowEnvironment;
let azurite: AzuriteServer;
let emulator: AmlEmulator;
let vault: TestKeyVault;

function servers(): AzureTestServers {
  return { env, azurite, emulator, vault };
}

/** Uploads the fixture's input files under a new prefix of the test container and returns the batch input. */
async function uploadedInput(f: Fixture, files: Record<string, string>, extra: Partial<BatchScoringInput> = {}, delaySeconds = 0): Promise<BatchScoringInput> {
  const prefix = `rounds/${uniqueTaskQueue('input')}`;
  const container = azurite.serviceClient().getContainerClient(CONTAINER);
  for (const relative of Object.keys(files)) {
    await container.getBlockBlobClient(`${prefix}/${relative}`).uploadFile(path.join(f.inputFolder, relative));
  }
  return azureBatchInput(servers(), {
    inputFolder: prefix,
    codeDirectory: f.codeDirectory,
    programArguments: ['--input_root', '${{inputs.input_data}}', '--calls_log', f.callsLog, '--delay', String(delaySeconds), '--fail_while', f.failWhile],
    processCount: 1,
    miniBatchSize: 2,
    maxRetries: 0,
    ...extra,
  });
}

describeWithSpec('follow-up rounds and rescores on the Azure backend', () => {
  beforeAll(async () => {
    env = await connectToSharedDevServer();
    vault = testKeyVaultFromEnvironment();
    azurite = await startAzurite();
    emulator = await startAmlEmulator({ storage: azurite, statusStepDelayMs: 50 });
    await vault.setSecret(DATASTORE_SECRET, azurite.accountKey);
    await azurite.serviceClient().getContainerClient(CONTAINER).createIfNotExists();
  });

  afterAll(async () => {
    await emulator?.stop();
    await azurite?.stop();
    await env?.teardown();
  });

  test('repeated mini-batch counted as duplicates', async () => {
    const files = numberedFiles(8);
    const f = fixture(files);
    emulator.repeatMiniBatchesOfNextJob([1]);
    const summary = await runAzureBatch(servers(), await uploadedInput(f, files));

    expect(readRows(summary.resultsFile!)).toHaveLength(10);
    expect(summary.ledger).toMatchObject({ scored: 8, failed: 0, duplicateRows: 2 });
    expect(emulator.validationErrors).toEqual([]);
  });

  test('canceled job finished by a follow-up job', async () => {
    const files = numberedFiles(24);
    const f = fixture(files);
    const input = await uploadedInput(f, files, { followUpRounds: 1 }, 0.1);
    const { worker, taskQueue } = await createAzureWorker(servers(), createAzureBackend(servers()));
    const workflowId = uniqueTaskQueue('azure-halfway');

    const { summary, firstRoundPids } = await worker.runUntil(async () => {
      const handle = await env.client.workflow.start('batchScoring', { taskQueue, workflowId, args: [input] });
      const jobName = `amlbatch-${workflowId}-1`;
      while (readCalls(f.callsLog).length < 8) await new Promise((resolve) => setTimeout(resolve, 100));
      emulator.cancelJobExternally(jobName);
      while (emulator.jobStatus(jobName) !== 'Canceled') await new Promise((resolve) => setTimeout(resolve, 100));
      const firstRoundPids = new Set(readCalls(f.callsLog).map((call) => call.pid));
      return { summary: (await handle.result()) as BatchSummary, firstRoundPids };
    });

    expect(summary.jobs?.map((job) => job.status)).toEqual(['Canceled', 'Completed']);
    expect(summary.ledger).toMatchObject({ scored: 24, failed: 0, duplicateRows: 0 });
    const rows = readRows(summary.resultsFile!);
    const successes = countBy(rows.filter((row) => row.error === null).map((row) => row.path));
    expect(successes.size).toBe(24);
    expect([...successes.values()].every((count) => count === 1)).toBe(true);

    const rounds = JSON.parse(readFileSync(path.join(summary.outputLocation!, 'results-rounds.json'), 'utf8')) as { rounds: { rows: number }[] };
    const firstRoundRows = rows.slice(0, rounds.rounds[0].rows).map((row) => row.path);
    const secondRoundCalls = readCalls(f.callsLog).filter((call) => !firstRoundPids.has(call.pid)).map((call) => call.path);
    expect(firstRoundRows.length).toBeGreaterThan(0);
    expect(new Set(secondRoundCalls)).toEqual(new Set(Object.keys(files).filter((item) => !firstRoundRows.includes(item))));
    expect(emulator.validationErrors).toEqual([]);
  });

  test('rescore scores only failed items', async () => {
    const files = numberedFiles(10, (index) => (index % 5 === 0 ? `flaky ${index}` : `item ${index}`));
    const f = fixture(files);
    writeFileSync(f.failWhile, 'fail the flaky items');
    const input = await uploadedInput(f, files);
    const { worker, taskQueue } = await createAzureWorker(servers(), createAzureBackend(servers()));
    const client = BatchClient.fromClient(env.client, { ...loadConfig({}, projectRoot()), taskQueue });

    const { first, rescored } = await worker.runUntil(async () => {
      const first = (await env.client.workflow.execute('batchScoring', { taskQueue, workflowId: uniqueTaskQueue('azure-flaky'), args: [input] })) as BatchSummary;
      rmSync(f.failWhile);
      const started = await client.rescore(first.workflowId);
      return { first, rescored: await client.result(started!.workflowId) };
    });

    expect(first.ledger).toMatchObject({ scored: 8, failed: 2 });
    expect(rescored).toMatchObject({ outcome: 'scored', rescoreOf: first.workflowId, itemsScored: 10, itemsFailed: 0 });
    expect(rescored.jobs?.map((job) => job.items)).toEqual([2]);
    const calls = countBy(readCalls(f.callsLog).map((call) => call.path));
    for (const [item, count] of calls) expect([item, count]).toEqual([item, Number(item.slice(6, 9)) % 5 === 0 ? 2 : 1]);
    expect(emulator.validationErrors).toEqual([]);
  });

  test('items of a failed mini-batch get the reason from the job logs', async () => {
    const files = numberedFiles(6, (index) => (index === 2 ? `raise ${index}` : `item ${index}`));
    const f = fixture(files);
    const summary = await runAzureBatch(servers(), await uploadedInput(f, files));

    // run() raised for item 2, so its mini-batch of items 2 and 3 failed; Azure ML names no items, only mini-batches.
    expect(summary.ledger).toMatchObject({ scored: 4, failed: 2, failedByReason: { 'no_result ValueError': 2 } });
    const records = await ledgerRecords(summary.ledger!.ledgerFile);
    const failed = records.filter((record) => record.state === 'failed');
    expect(failed.map((record) => record.path)).toEqual(['items/002.txt', 'items/003.txt']);
    expect(failed[0].reason!.message).toContain('1 mini-batch failed (ValueError 1)');
    expect(summary.ledger!.failureExamples[0]).toMatchObject({ path: 'items/002.txt', reason: 'no_result ValueError' });
  });

  test('odd blobs get one ledger state each', async () => {
    const names = ['plain.txt', 'with space.txt', 'hash#tag.txt', 'per%cent.txt', 'amp&ersand.txt', 'caf\u00e9.txt', 'cafe\u0301.txt', '\u65e5\u672c.txt', 'empty.txt', 'corrupt.txt'];
    const files = Object.fromEntries(names.map((name) => [`odd/${name}`, oddFileContent(name)]));
    const f = fixture(files);
    const summary = await runAzureBatch(servers(), await uploadedInput(f, files));

    const records = await ledgerRecords(summary.ledger!.ledgerFile);
    expect(records.map((record) => record.path).sort()).toEqual(Object.keys(files).sort());
    expect(summary.ledger!.scored + summary.ledger!.failed).toBe(names.length);
    expect(records.find((record) => record.path === 'odd/corrupt.txt')).toMatchObject({ state: 'failed', reason: { kind: 'row_error' } });
    expect(summary.inputWarnings?.map((warning) => warning.code)).toEqual(expect.arrayContaining(['whitespace_in_name', 'unicode_normalization_collision']));
  });
});
