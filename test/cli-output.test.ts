import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { buildLedger } from '../activities/ledger/build-ledger';
import type { LedgerRecord } from '../activities/ledger/ledger-format';
import { compiledModulePath, projectRoot } from '../common/project-paths';
import type { BatchSummary } from '../workflows/summary';
import { fixture, numberedFiles } from './support/counting-script';
import { createLocalHarness } from './support/local-batch';
import { connectToSharedDevServer, uniqueTaskQueue } from './support/temporal-env';

// What the `amlbatch` CLI prints for a finished batch: rows from the item ledger or the raw results file, failures
// with control characters, and a standard output closed early. The compiled CLI runs in a child process against the
// shared dev server. Most batches here are stand-ins: a workflow that completes at once with a summary written by
// the test, pointing at a ledger and results file the test built. One test runs a real batch and its rescore.

interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

interface CliOptions {
  /** Close the read end of the child's standard output before it writes, or once its first chunk arrives. */
  closeStdout?: 'at_start' | 'after_first_chunk';
  environment?: Record<string, string>;
}

function runCli(args: string[], options: CliOptions = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [compiledModulePath('client/cli'), ...args], {
      env: { ...process.env, ...options.environment },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    if (options.closeStdout === 'at_start') child.stdout.destroy();
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      if (options.closeStdout === 'after_first_chunk') child.stdout.destroy();
    });
    const timer = setTimeout(() => child.kill(), 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function jsonLines(values: readonly unknown[]): string {
  return values.map((value) => `${JSON.stringify(value)}\n`).join('');
}

function parseJsonLines(text: string): unknown[] {
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as unknown);
}

/** Source of a workflow that completes at once with the summary it is given, which the CLI reads as a batch's. */
const SUMMARY_WORKFLOW = 'exports.finishedBatch = async function finishedBatch(summary) { return summary; };\n';

let env: TestWorkflowEnvironment;
let worker: Worker;
let workerRun: Promise<void> | undefined;
let folder: string;

beforeAll(async () => {
  env = await connectToSharedDevServer();
  folder = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-cli-output-'));
  const workflowsPath = path.join(folder, 'summary-workflow.js');
  writeFileSync(workflowsPath, SUMMARY_WORKFLOW);
  worker = await Worker.create({
    connection: env.nativeConnection,
    namespace: 'default',
    taskQueue: uniqueTaskQueue('cli-output'),
    workflowsPath,
    bundlerOptions: {
      // The workflow file lies outside the project, so the bundler looks for the SDK in the project's node_modules.
      webpackConfigHook: (config) => ({
        ...config,
        resolve: { ...config.resolve, modules: [...(config.resolve?.modules ?? ['node_modules']), path.join(projectRoot(), 'node_modules')] },
      }),
    },
  });
  workerRun = worker.run();
});

afterAll(async () => {
  if (workerRun) {
    worker.shutdown();
    await workerRun;
  }
  await env?.teardown();
  if (folder) rmSync(folder, { recursive: true, force: true });
});

/** Completes a stand-in batch whose summary has these fields, and returns its workflow id. */
async function finishedBatch(fields: Partial<BatchSummary>): Promise<string> {
  const workflowId = uniqueTaskQueue('finished');
  const summary: BatchSummary = {
    workflowId,
    backend: 'local',
    outcome: 'scored',
    itemsTotal: 0,
    itemsScored: 0,
    itemsFailed: 0,
    stages: [],
    ...fields,
  };
  await env.client.workflow.execute('finishedBatch', { taskQueue: worker.options.taskQueue, workflowId, args: [summary] });
  return workflowId;
}

/** Returns ledger counts for a summary. The CLI reads only `ledgerFile` from them. */
function ledgerSummary(ledgerFile: string, counts: { scored: number; failed: number }): NonNullable<BatchSummary['ledger']> {
  return { ledgerFile, ...counts, excluded: 0, duplicateRows: 0, unknownRows: 0, failedByReason: {}, failureExamples: [] };
}

describe('results', () => {
  // c.png reports an error in round 1 and is scored in round 2, so the results file contains two rows for it. b.png
  // fails in both rounds, and d.png has no row at all.
  const ITEMS = ['c.png', 'a.png', 'b.png', 'd.png'];
  const ROUND_1 = [
    { path: 'a.png', label: 'cat, "tabby"', error: null },
    { path: 'c.png', label: null, error: 'OSError: cannot read c.png' },
    { path: 'b.png', label: null, error: 'OSError: truncated' },
  ];
  const ROUND_2 = [
    { path: 'c.png', label: 'dog', error: null },
    { path: 'b.png', label: null, error: 'OSError: still truncated' },
  ];
  let resultsFile: string;
  let ledgerFile: string;

  beforeAll(async () => {
    const batchFolder = mkdtempSync(path.join(folder, 'batch-'));
    const manifestPath = path.join(batchFolder, 'manifest.jsonl');
    writeFileSync(manifestPath, jsonLines(ITEMS.map((item) => ({ path: item, size: 10 }))));
    resultsFile = path.join(batchFolder, 'parallel_run_step.txt');
    writeFileSync(resultsFile, jsonLines([...ROUND_1, ...ROUND_2]));
    ledgerFile = path.join(batchFolder, 'ledger.jsonl');
    await buildLedger({ manifestPath, resultsPath: resultsFile, resultsRoundStarts: [ROUND_1.length + 1], ledgerPath: ledgerFile });
  });

  test('replaced row printed once per item', async () => {
    const workflowId = await finishedBatch({ resultsFile, ledger: ledgerSummary(ledgerFile, { scored: 2, failed: 2 }) });

    const printed = await runCli(['results', workflowId]);

    expect(printed.code).toBe(0);
    expect(parseJsonLines(printed.stdout)).toEqual([ROUND_2[0], ROUND_1[0], ROUND_2[1]]);
    expect(printed.stderr).toBe(`1 failed item has no row; amlbatch failures ${workflowId} lists them\n`);
  });

  test('replaced row exported once per item as CSV', async () => {
    const workflowId = await finishedBatch({ resultsFile, ledger: ledgerSummary(ledgerFile, { scored: 2, failed: 2 }) });
    const csvFile = path.join(mkdtempSync(path.join(folder, 'csv-')), 'rows.csv');

    const printed = await runCli(['results', workflowId, '--format', 'csv']);
    const exported = await runCli(['results', workflowId, '--format', 'csv', '--output', csvFile]);

    expect(printed.code).toBe(0);
    expect(printed.stdout).toBe('path,label,error\nc.png,dog,\na.png,"cat, ""tabby""",\nb.png,,OSError: still truncated\n');
    expect(exported.code).toBe(0);
    expect(readFileSync(csvFile, 'utf8')).toBe(printed.stdout);
    expect(exported.stderr).toContain(`Wrote 3 rows, one per item, to ${csvFile}`);
  });

  test('--raw exports the results file as is', async () => {
    const workflowId = await finishedBatch({ resultsFile, ledger: ledgerSummary(ledgerFile, { scored: 2, failed: 2 }) });

    const printed = await runCli(['results', workflowId, '--raw']);
    const csv = await runCli(['results', workflowId, '--raw', '--format', 'csv']);

    expect(printed.code).toBe(0);
    expect(printed.stdout).toBe(readFileSync(resultsFile, 'utf8'));
    expect(printed.stderr).toBe('');
    expect(csv.code).toBe(0);
    expect(csv.stdout.split('\n')).toEqual([
      'path,label,error',
      'a.png,"cat, ""tabby""",',
      'c.png,,OSError: cannot read c.png',
      'b.png,,OSError: truncated',
      'c.png,dog,',
      'b.png,,OSError: still truncated',
      '',
    ]);
  });

  test('missing ledger falls back to the results file', async () => {
    const missingLedger = path.join(folder, 'no-such-ledger.jsonl');
    const workflowId = await finishedBatch({ resultsFile, ledger: ledgerSummary(missingLedger, { scored: 2, failed: 2 }) });

    const printed = await runCli(['results', workflowId]);

    expect(printed.code).toBe(0);
    expect(printed.stdout).toBe(readFileSync(resultsFile, 'utf8'));
    expect(printed.stderr).toContain(`ledger ${missingLedger} is not on this machine, so the rows come from the results file as it is`);
  });

  test('summary_only batch names the summary command', async () => {
    const workflowId = await finishedBatch({ ledger: ledgerSummary(ledgerFile, { scored: 2, failed: 2 }) });

    const printed = await runCli(['results', workflowId]);

    expect(printed.code).toBe(2);
    expect(printed.stderr).toContain(`print its summary with amlbatch results ${workflowId} --summary`);
  });
});

describe('failures', () => {
  test('control characters are escaped', async () => {
    const records: LedgerRecord[] = [
      { path: 'plain.png', state: 'scored', row: { path: 'plain.png', label: 1 } },
      { path: 'two\nlines.png', state: 'failed', reason: { kind: 'row_error', errorType: 'OSError', message: 'cannot read\nline 2' } },
      { path: 'tab\there.png', state: 'failed', reason: { kind: 'timeout', errorType: 'TimeoutError', message: 'run() took\t61 s' } },
      { path: 'back\\slash\r.png', state: 'failed', reason: { kind: 'no_result' } },
      { path: 'escape\u001b[31m\u0085.png', state: 'failed' },
    ];
    const ledgerFile = path.join(mkdtempSync(path.join(folder, 'failures-')), 'ledger.jsonl');
    writeFileSync(ledgerFile, jsonLines(records));
    const workflowId = await finishedBatch({ ledger: ledgerSummary(ledgerFile, { scored: 1, failed: 4 }) });

    const text = await runCli(['failures', workflowId]);
    const json = await runCli(['failures', workflowId, '--json']);

    expect(text.code).toBe(0);
    expect(text.stdout.split('\n')).toEqual([
      'two\\nlines.png\trow_error OSError\tcannot read\\nline 2',
      'tab\\there.png\ttimeout TimeoutError\trun() took\\t61 s',
      'back\\\\slash\\r.png\tno_result\t',
      'escape\\u001b[31m\\u0085.png\tno_result\t',
      '',
    ]);
    expect(text.stderr).toBe('4 failed items\n');
    expect(json.code).toBe(0);
    expect(parseJsonLines(json.stdout)).toEqual(records.slice(1).map((record) => ({ path: record.path, reason: record.reason })));
  });
});

describe('closed standard output', () => {
  // Node.js reports a closed pipe as an unhandled error only when a later write comes in a later turn of the event
  // loop. So each command here has more output than one read of the ledger (1 MiB) and one pipe buffer (64 KiB).
  const ITEM_COUNT = 20_000;
  let workflowId: string;
  let resultsFile: string;

  beforeAll(async () => {
    const records: LedgerRecord[] = Array.from({ length: ITEM_COUNT }, (_, index) => {
      const item = `items/${String(index).padStart(5, '0')}.png`;
      const error = `OSError: cannot identify image file ${item}`;
      return { path: item, state: 'failed', reason: { kind: 'row_error', errorType: 'OSError', message: error }, row: { path: item, label: null, error } };
    });
    const batchFolder = mkdtempSync(path.join(folder, 'large-'));
    const ledgerFile = path.join(batchFolder, 'ledger.jsonl');
    writeFileSync(ledgerFile, jsonLines(records));
    resultsFile = path.join(batchFolder, 'parallel_run_step.txt');
    writeFileSync(resultsFile, jsonLines(records.map((record) => record.row)));
    workflowId = await finishedBatch({ resultsFile, ledger: ledgerSummary(ledgerFile, { scored: 0, failed: ITEM_COUNT }) });
  });

  test.each([[['--format', 'csv']], [[]], [['--raw']]])('results %j ends quietly when the reader stops', async (args) => {
    const run = await runCli(['results', workflowId, ...args], { closeStdout: 'after_first_chunk' });

    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.signal).toBeNull();
    expect(run.stdout.length).toBeGreaterThan(0);
    expect(run.stdout.length).toBeLessThan(readFileSync(resultsFile, 'utf8').length);
  });

  test('failures ends quietly on a closed pipe', async () => {
    const run = await runCli(['failures', workflowId], { closeStdout: 'at_start' });

    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.signal).toBeNull();
  });

  test('failures ends quietly when the reader stops', async () => {
    const run = await runCli(['failures', workflowId], { closeStdout: 'after_first_chunk' });

    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout.startsWith('items/00000.png\trow_error OSError\tOSError: cannot identify image file items/00000.png\n')).toBe(true);
  });

  test('list ends quietly on a closed pipe', async () => {
    expect((await runCli(['list', '--limit', '5'])).stdout).not.toBe('');

    const run = await runCli(['list', '--limit', '5'], { closeStdout: 'at_start' });

    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
  });
});

describe('results after a real rescore', () => {
  test('rescored items printed once', async () => {
    const harness = await createLocalHarness(env);
    const f = fixture(numberedFiles(6, (index) => (index % 3 === 0 ? `flaky ${index}` : `item ${index}`)));
    writeFileSync(f.failWhile, 'fail the flaky items');
    const input = {
      inputFolder: f.inputFolder,
      codeDirectory: f.codeDirectory,
      programArguments: ['--input_root', '${{inputs.input_data}}', '--calls_log', f.callsLog, '--fail_while', f.failWhile],
      processCount: 1,
      miniBatchSize: 2,
      maxRetries: 0,
      operatorRetryTimeout: 0,
    };
    const { first, rescore } = await harness.worker.runUntil(async () => {
      const first = (await env.client.workflow.execute('batchScoring', {
        taskQueue: harness.config.taskQueue,
        workflowId: uniqueTaskQueue('cli-rescore'),
        args: [input],
      })) as BatchSummary;
      rmSync(f.failWhile);
      const rescore = await runCli(['rescore', first.workflowId, '--wait'], { environment: { AMLBATCH_TASK_QUEUE: harness.config.taskQueue } });
      return { first, rescore };
    });
    expect(first.ledger).toMatchObject({ scored: 4, failed: 2 });
    expect(rescore.code).toBe(0);
    const rescoreId = `${first.workflowId}-rescore-1`;

    const printed = await runCli(['results', rescoreId]);
    const raw = await runCli(['results', rescoreId, '--raw']);
    const csv = await runCli(['results', rescoreId, '--format', 'csv']);

    const items = Object.keys(numberedFiles(6));
    expect(printed.code).toBe(0);
    const rows = parseJsonLines(printed.stdout) as { path: string; error: string | null }[];
    expect(rows.map((row) => row.path)).toEqual(items);
    expect(rows.every((row) => row.error === null)).toBe(true);
    expect(raw.code).toBe(0);
    expect(parseJsonLines(raw.stdout)).toHaveLength(8);
    expect(raw.stdout).toBe(readFileSync(first.resultsFile!, 'utf8'));
    expect(csv.stdout.trim().split('\n')).toHaveLength(1 + items.length);
  });
});
