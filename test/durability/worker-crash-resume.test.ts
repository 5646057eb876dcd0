import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, watch, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import * as proto from '@temporalio/proto';
import { freePort, startDevServer, type DevServer } from '../../common/dev-server';
import { compiledModulePath, defaultPythonExecutable } from '../../common/project-paths';
import { statusQuery } from '../../workflows/messages';
import type { BatchSummary } from '../../workflows/summary';
import { PROJECT_SECRETS_FILE, SAMPLE_FOLDER, readRows } from '../support/local-batch';

// A real worker process (dist/worker/main.js) is killed with SIGKILL in the middle of three stages of one local
// batch over the sample images. The Temporal dev server (SQLite file in a temporary folder) is killed and started
// again while the job runs. Each time a new worker takes over. The batch must finish with every stage run once, one
// job, and exactly one row per image.

const { PENDING_ACTIVITY_STATE_STARTED } = proto.temporal.api.enums.v1.PendingActivityState;

/** Rows carry 100 KB of padding each, so collecting the 360 rows (36 MB) takes long enough to be interrupted. */
const SLOW_SCRIPT = `
import json, os, sys, time

def init():
    global input_root
    input_root = sys.argv[sys.argv.index("--input_root") + 1]

def run(mini_batch):
    time.sleep(2)
    return [json.dumps({"path": os.path.relpath(p, input_root), "pad": "x" * 100000}) for p in mini_batch]
`;

let scratch: string;
let port: number;
let server: DevServer;
let connection: Connection;
let client: Client;
const workers: ChildProcess[] = [];

function startServer(): Promise<DevServer> {
  return startDevServer({ port, dbFile: path.join(scratch, 'temporal.sqlite'), logFile: path.join(scratch, 'temporal.log') });
}

beforeAll(async () => {
  scratch = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-crash-'));
  port = await freePort();
  server = await startServer();
  connection = await Connection.connect({ address: server.address });
  client = new Client({ connection });
});

afterAll(async () => {
  for (const worker of workers) if (worker.exitCode === null && worker.signalCode === null) worker.kill('SIGKILL');
  await connection?.close();
  await server?.stop();
});

/** Starts `node dist/worker/main.js` as users run it, with its log in the scratch folder. */
function startWorker(environment: Record<string, string>): ChildProcess {
  const log = openSync(path.join(scratch, `worker-${workers.length + 1}.log`), 'a');
  const worker = spawn(process.execPath, [compiledModulePath('worker/main')], { env: { ...process.env, ...environment }, stdio: ['ignore', log, log] });
  closeSync(log);
  workers.push(worker);
  return worker;
}

async function killWorker(worker: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => worker.once('exit', resolve));
  worker.kill('SIGKILL');
  await exited;
}

/** Polls the batch's description until `predicate` holds; the description comes from the server, not a worker. */
async function waitForPending(handle: WorkflowHandle, activity: string, predicate: (attempt: number) => boolean): Promise<void> {
  for (let poll = 0; poll < 1200; poll += 1) {
    const pending = (await handle.describe()).raw.pendingActivities ?? [];
    const found = pending.find((candidate) => candidate.activityType?.name === activity);
    if (found?.state === PENDING_ACTIVITY_STATE_STARTED && predicate(found.attempt ?? 1)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`activity ${activity} of ${handle.workflowId} never reached the awaited attempt`);
}

/** Waits until the local job has finished `count` mini-batches, read from its status file. */
async function waitForMiniBatches(jobFolder: string, count: number): Promise<void> {
  for (let poll = 0; poll < 1200; poll += 1) {
    const file = path.join(jobFolder, 'status.json');
    if (existsSync(file)) {
      const status = JSON.parse(readFileSync(file, 'utf8')) as { progress: { miniBatchesSucceeded: number } };
      if (status.progress.miniBatchesSucceeded >= count) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`job ${jobFolder} never finished ${count} mini-batches`);
}

/**
 * Resolves with true as soon as a collect draft of `resultsFile` appears, after freezing `worker` with SIGSTOP, or
 * with false when the results file appears without a draft being seen first.
 */
function freezeWorkerMidCollect(resultsFile: string, worker: ChildProcess): Promise<boolean> {
  const folder = path.dirname(resultsFile);
  const draftPrefix = `.${path.basename(resultsFile)}.`;
  return new Promise((resolve) => {
    const watcher = watch(folder, (_event, name) => {
      if (typeof name !== 'string') return;
      if (name.startsWith(draftPrefix)) {
        worker.kill('SIGSTOP');
        watcher.close();
        resolve(!existsSync(resultsFile));
      } else if (name === path.basename(resultsFile)) {
        watcher.close();
        resolve(false);
      }
    });
  });
}

function historyOf(handle: WorkflowHandle) {
  return handle.fetchHistory().then((history) => history.events ?? []);
}

describe('batch resumes after crashes', () => {
  // Two heartbeat timeouts of 20 s, one of 10 s and a job of about 40 s make this test take about two minutes.
  test('crashes lose and repeat nothing', async () => {
    const workspace = path.join(scratch, 'workspace');
    const resultsFolder = path.join(scratch, 'results');
    mkdirSync(resultsFolder);
    const codeDirectory = path.join(scratch, 'code');
    mkdirSync(codeDirectory);
    writeFileSync(path.join(codeDirectory, 'score.py'), SLOW_SCRIPT);
    // Python that starts two seconds late, so the submit stage (which runs Python to check the entry script) lasts
    // long enough to kill its worker in the middle.
    const slowPython = path.join(scratch, 'slow-python');
    writeFileSync(slowPython, `#!/bin/sh\nsleep 2\nexec "${defaultPythonExecutable()}" "$@"\n`);
    chmodSync(slowPython, 0o755);
    const environment = {
      TEMPORAL_ADDRESS: server.address,
      AMLBATCH_TASK_QUEUE: 'amlbatch-crash-test',
      AMLBATCH_LOCAL_WORKSPACE: workspace,
      AMLBATCH_SECRETS_FILE: PROJECT_SECRETS_FILE,
      AMLBATCH_PYTHON: slowPython,
      AMLBATCH_LOG_LEVEL: 'INFO',
    };
    const imageCount = readdirSync(SAMPLE_FOLDER, { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile()).length;

    // 1. Kill the first worker while the submit stage checks the entry script, before any job exists.
    let worker = startWorker(environment);
    const handle = await client.workflow.start('batchScoring', {
      taskQueue: environment.AMLBATCH_TASK_QUEUE,
      workflowId: 'crash-resume-batch',
      args: [{ inputFolder: SAMPLE_FOLDER, codeDirectory, miniBatchSize: 10, processCount: 2, resultsFolder }],
    });
    await waitForPending(handle, 'submitScoringJob', () => true);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const jobsBeforeKill = existsSync(path.join(workspace, 'jobs')) ? readdirSync(path.join(workspace, 'jobs')) : [];
    await killWorker(worker);
    worker = startWorker(environment);

    // 2. Kill the second worker while it waits for the running job.
    const jobFolder = path.join(workspace, 'jobs', 'crash-resume-batch-1');
    await waitForPending(handle, 'waitForJob', () => true);
    await waitForMiniBatches(jobFolder, 4);
    await killWorker(worker);
    worker = startWorker(environment);

    // 3. Once the third worker waits on the job, kill the server and start it again on the same database.
    await waitForPending(handle, 'waitForJob', (attempt) => attempt >= 2);
    const progressAtRestart = JSON.parse(readFileSync(path.join(jobFolder, 'status.json'), 'utf8')) as { state: string };
    const serverExited = new Promise((resolve) => server.process.once('exit', resolve));
    server.process.kill('SIGKILL');
    await serverExited;
    server = await startServer();

    // 4. Freeze the third worker as soon as it writes its collect draft, then kill it.
    const resultsFile = path.join(resultsFolder, 'parallel_run_step.txt');
    const frozenMidCollect = await freezeWorkerMidCollect(resultsFile, worker);
    await killWorker(worker);
    startWorker(environment);

    const summary = (await handle.result()) as BatchSummary;
    const status = await handle.query(statusQuery);
    const events = await historyOf(handle);

    expect(jobsBeforeKill).toEqual([]);
    expect(progressAtRestart.state).toBe('Running');
    expect(frozenMidCollect).toBe(true);

    // Every stage was scheduled once; the killed ones ran a second attempt of the same activity.
    const scheduled = events.flatMap((event) => {
      const name = event.activityTaskScheduledEventAttributes?.activityType?.name;
      return name ? [name] : [];
    });
    expect(scheduled).toEqual(['authenticate', 'checkVaultAccess', 'ensureDatastore', 'registerDataset', 'submitScoringJob', 'waitForJob', 'collectResults']);
    const attempts = Object.fromEntries(
      events.flatMap((event) => {
        const started = event.activityTaskStartedEventAttributes;
        if (!started) return [];
        const scheduledEvent = events.find((candidate) => candidate.eventId?.toString() === started.scheduledEventId?.toString());
        return [[scheduledEvent?.activityTaskScheduledEventAttributes?.activityType?.name ?? '?', started.attempt ?? 1]];
      }),
    );
    expect(attempts.submitScoringJob).toBeGreaterThanOrEqual(2);
    expect(attempts.waitForJob).toBeGreaterThanOrEqual(2);
    expect(attempts.collectResults).toBeGreaterThanOrEqual(2);

    // One job, started by one driver, with each mini-batch journaled once.
    expect(readdirSync(path.join(workspace, 'jobs'))).toEqual(['crash-resume-batch-1']);
    const driverStarts = readFileSync(path.join(jobFolder, 'logs', 'driver.log'), 'utf8')
      .split('\n')
      .filter((line) => line.includes('"Job driver starting"'));
    expect(driverStarts).toHaveLength(1);
    const journal = readFileSync(path.join(jobFolder, 'journal.jsonl'), 'utf8').split('\n').filter((line) => line !== '');
    expect(journal).toHaveLength(Math.ceil(imageCount / 10));

    // Exactly one row per image, and nothing but the results file in the results folder.
    expect(summary.outcome).toBe('scored');
    expect(summary.itemsTotal).toBe(imageCount);
    expect(summary.itemsScored).toBe(imageCount);
    const rows = readRows(summary.resultsFile!);
    expect(rows).toHaveLength(imageCount);
    expect(new Set(rows.map((row) => row.path)).size).toBe(imageCount);
    // No draft of an interrupted collect is left behind: only the rows, the item ledger and its inputs.
    expect(readdirSync(resultsFolder).sort()).toEqual([
      'failure-records.jsonl',
      'ledger-counts.json',
      'ledger.jsonl',
      'parallel_run_step.txt',
      'results-rounds.json',
    ]);
    // Every stage completed without an operator; selectItems runs only for follow-up jobs and rescores.
    const ran = status.stages.filter((stage) => stage.stage !== 'selectItems');
    expect(ran.every((stage) => stage.state === 'completed' && !stage.operatorRetries)).toBe(true);
    expect(status.stages.find((stage) => stage.stage === 'selectItems')?.state).toBe('skipped');
  }, 240_000);
});
