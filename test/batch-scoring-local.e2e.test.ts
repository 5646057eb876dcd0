import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { connectToSharedDevServer, uniqueTaskQueue } from './support/temporal-env';
import { SAMPLE_FOLDER, createLocalHarness, readRows, runLocalBatch, type LocalBatchHarness } from './support/local-batch';

// The batchScoring workflow end to end on the real dev server, with the real local backend, the real parallel
// runner and real Python processes running the bundled scoring package.

let env: TestWorkflowEnvironment;

beforeAll(async () => {
  env = await connectToSharedDevServer();
});

afterAll(async () => {
  await env?.teardown();
});

/** Lists every file under `root` as a `/`-separated relative path. */
function listFiles(root: string, relative = ''): string[] {
  return readdirSync(path.join(root, relative), { withFileTypes: true }).flatMap((entry) => {
    const child = relative === '' ? entry.name : `${relative}/${entry.name}`;
    return entry.isDirectory() ? listFiles(root, child) : [child];
  });
}

async function failureMessage(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof WorkflowFailedError) return error.cause?.message ?? '';
    throw error;
  }
  throw new Error('expected the batch to fail');
}

function samplePngs(count: number): string[] {
  return listFiles(SAMPLE_FOLDER).slice(0, count).map((file) => path.join(SAMPLE_FOLDER, file));
}

describe('batchScoring on the local backend', () => {
  let harness: LocalBatchHarness;

  beforeEach(async () => {
    harness = await createLocalHarness(env);
  });

  test('sample folder gets one row per image', async () => {
    const files = listFiles(SAMPLE_FOLDER);
    expect(files.length).toBeGreaterThan(100);

    const summary = await runLocalBatch(env, harness, { inputFolder: SAMPLE_FOLDER, miniBatchSize: 16, processCount: 2 });

    expect(summary.outcome).toBe('scored');
    expect(summary.itemsTotal).toBe(files.length);
    expect(summary.itemsScored).toBe(files.length);
    expect(summary.itemsFailed).toBe(0);
    const rows = readRows(summary.resultsFile!);
    expect(rows).toHaveLength(files.length);
    expect(rows.map((row) => row.path).sort()).toEqual([...files].sort());

    const correct = rows.filter((row) => String(row.label) === row.path.split('/')[0]).length;
    expect(correct / rows.length).toBeGreaterThanOrEqual(0.9);
  });

  test('summary carries stage timings and locations', async () => {
    const folder = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-few-'));
    for (const file of samplePngs(3)) copyFileSync(file, path.join(folder, path.basename(file)));

    const summary = await runLocalBatch(env, harness, { inputFolder: folder });

    expect(summary.stages.map((stage) => stage.stage)).toEqual([
      'authenticate',
      'checkVaultAccess',
      'ensureDatastore',
      'registerDataset',
      'selectItems',
      'submitScoringJob',
      'waitForJob',
      'collectResults',
    ]);
    // selectItems runs only for follow-up jobs and rescores.
    for (const stage of summary.stages.filter((each) => each.stage !== 'selectItems')) {
      expect(stage.state).toBe('completed');
      expect(stage.durationMs).toBeGreaterThanOrEqual(0);
    }
    expect(summary.stages.find((each) => each.stage === 'selectItems')?.state).toBe('skipped');
    expect(summary.outputLocation).toBe(path.join(harness.workspaceDir, 'results', summary.workflowId.replace(/[^A-Za-z0-9_-]/g, '_')));
    expect(summary.dataset?.manifestSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(summary.miniBatches).toEqual({ total: 1, succeeded: 1, failed: 0 });
  });

  test('hostile file names are scored under their exact paths', async () => {
    const folder = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-names-'));
    const names = ['with space.png', '#hash.png', '100%.png', 'a&b?.png', 'café.png', 'cafe\u0301.png', '数字.png', 'sub dir/x#y%z.png'];
    const [source] = samplePngs(1);
    for (const name of names) {
      mkdirSync(path.dirname(path.join(folder, name)), { recursive: true });
      copyFileSync(source, path.join(folder, name));
    }
    writeFileSync(path.join(folder, 'empty.png'), '');
    writeFileSync(path.join(folder, 'truncated.png'), readFileSync(source).subarray(0, 40));

    const summary = await runLocalBatch(env, harness, { inputFolder: folder, miniBatchSize: 4 });

    const rows = readRows(summary.resultsFile!);
    expect(rows.map((row) => row.path).sort()).toEqual([...names, 'empty.png', 'truncated.png'].sort());
    const failed = rows.filter((row) => row.error).map((row) => row.path).sort();
    expect(failed).toEqual(['empty.png', 'truncated.png']);
    expect(summary.itemsTotal).toBe(names.length + 2);
    expect(summary.itemsScored).toBe(names.length);
    expect(summary.itemsFailed).toBe(2);

    // The item ledger has exactly one record per file, keyed by its exact path.
    const ledger = readFileSync(summary.ledger!.ledgerFile, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { path: string; state: string });
    expect(ledger.map((record) => record.path).sort()).toEqual([...names, 'empty.png', 'truncated.png'].sort());
    expect(ledger.filter((record) => record.state === 'failed').map((record) => record.path).sort()).toEqual(['empty.png', 'truncated.png']);
    expect(summary.ledger!.duplicateRows).toBe(0);
    expect(summary.ledger!.unknownRows).toBe(0);
  });

  test('empty folder finishes with nothing to score', async () => {
    const folder = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-empty-'));
    mkdirSync(path.join(folder, 'only-folders'));

    const summary = await runLocalBatch(env, harness, { inputFolder: folder });

    expect(summary.outcome).toBe('nothing_to_score');
    expect(summary.itemsTotal).toBe(0);
    expect(summary.jobName).toBeUndefined();
    expect(existsSync(path.join(harness.workspaceDir, 'jobs'))).toBe(false);
  });

  test('missing folder fails naming the folder', async () => {
    const folder = path.join(os.tmpdir(), `amlbatch-missing-${Date.now()}`);

    const message = await failureMessage(runLocalBatch(env, harness, { inputFolder: folder, operatorRetryTimeout: 0 }));

    expect(message).toBe(`stage ensureDatastore failed: input folder ${folder} does not exist; check inputFolder`);
  });

  test('missing entry script fails before a job starts', async () => {
    const code = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-code-'));
    const folder = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-data-'));
    writeFileSync(path.join(folder, 'a.txt'), 'a');

    const message = await failureMessage(runLocalBatch(env, harness, { inputFolder: folder, codeDirectory: code, operatorRetryTimeout: 0 }));

    expect(message).toContain(`entry script ${path.join(code, 'score.py')} not found`);
    expect(existsSync(path.join(harness.workspaceDir, 'jobs'))).toBe(false);
  });

  test('entry script without run fails naming run', async () => {
    const code = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-code-'));
    writeFileSync(path.join(code, 'score.py'), 'def init():\n    pass\n');
    const folder = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-data-'));
    writeFileSync(path.join(folder, 'a.txt'), 'a');

    const message = await failureMessage(runLocalBatch(env, harness, { inputFolder: folder, codeDirectory: code, operatorRetryTimeout: 0 }));

    expect(message).toContain('defines no run()');
  });

  test('missing secret fails at the vault stage', async () => {
    const message = await failureMessage(
      runLocalBatch(env, harness, { inputFolder: SAMPLE_FOLDER, secretNames: ['model-signing-key', 'no-such-secret'], operatorRetryTimeout: 0 }),
    );

    expect(message).toContain('stage checkVaultAccess failed: secret "no-such-secret" not found');
    expect(message).toContain('AMLBATCH_SECRET_NO_SUCH_SECRET');
  });

  test('string input fails as invalid input', async () => {
    const message = await failureMessage(runLocalBatch(env, harness, '{"inputFolder": "/data"'));

    expect(message).toContain('(input) = "{\\"inputFolder\\": \\"/data\\"" is not allowed; expected a JSON object');
  });

  test('failing init fails the batch with the traceback', async () => {
    const code = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-code-'));
    writeFileSync(
      path.join(code, 'score.py'),
      'def init():\n    raise RuntimeError("model store unreachable")\n\ndef run(mini_batch):\n    return mini_batch\n',
    );
    const folder = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-data-'));
    writeFileSync(path.join(folder, 'a.txt'), 'a');

    const message = await failureMessage(
      runLocalBatch(env, harness, { inputFolder: folder, codeDirectory: code, processCount: 1, operatorRetryTimeout: 0 }),
    );

    expect(message).toContain('stage waitForJob failed');
    expect(message).toContain('model store unreachable');
  });

  test('history size does not grow with the folder', async () => {
    const small = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-small-'));
    for (const file of samplePngs(3)) copyFileSync(file, path.join(small, path.basename(file)));
    const eventCounts: number[] = [];
    // runUntil shuts its worker down, so each batch gets a worker of its own.
    const harnesses = [harness, await createLocalHarness(env)];
    for (const [index, inputFolder] of [small, SAMPLE_FOLDER].entries()) {
      const workflowId = uniqueTaskQueue('history');
      await runLocalBatch(env, harnesses[index], { inputFolder, miniBatchSize: 5 }, workflowId);
      const history = await env.client.workflow.getHandle(workflowId).fetchHistory();
      eventCounts.push(history.events?.length ?? 0);
      expect(JSON.stringify(history).length).toBeLessThan(64 * 1024);
    }

    // 3 files in 1 mini-batch and 360 files in 72 mini-batches give the same history: a fixed count per stage.
    expect(eventCounts[1]).toBe(eventCounts[0]);
    expect(eventCounts[1]).toBeLessThan(100);
  });
});
