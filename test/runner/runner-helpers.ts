import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defaultPythonExecutable } from '../../common/project-paths';
import type { LocalJobSpec, LocalJobStatus } from '../../activities/backends/local/runner/job-spec';
import { localJobDriverPid, readLocalJobStatus, startLocalJob } from '../../activities/backends/local/runner/local-job';

/** A job prepared in its own temporary folder: input files, manifest, entry script and spec. */
export interface TestJob {
  root: string;
  jobFolder: string;
  inputRoot: string;
  codeDirectory: string;
  /** Folder where test entry scripts leave markers; its path is in the STATE_DIR environment variable. */
  stateDir: string;
  spec: LocalJobSpec;
  /** Input file names in manifest order. */
  fileNames: string[];
}

export interface TestJobOptions {
  /** Python source of score.py. */
  script: string;
  /** Input file names relative to the input root; default f0.txt, f1.txt, ... */
  fileNames?: string[];
  fileCount?: number;
  spec?: Partial<LocalJobSpec>;
}

const createdRoots: string[] = [];

/** Writes the files of a job into a new temporary folder; nothing runs until the test starts the job. */
export function createTestJob(options: TestJobOptions): TestJob {
  const root = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-runner-'));
  createdRoots.push(root);
  const inputRoot = path.join(root, 'input');
  const codeDirectory = path.join(root, 'code');
  const stateDir = path.join(root, 'state');
  const jobName = 'test-job';
  const jobFolder = path.join(root, 'jobs', jobName);
  for (const folder of [inputRoot, codeDirectory, stateDir]) mkdirSync(folder, { recursive: true });

  const fileNames = options.fileNames ?? Array.from({ length: options.fileCount ?? 4 }, (_, index) => `f${index}.txt`);
  const manifestLines: string[] = [];
  for (const name of fileNames) {
    const file = path.join(inputRoot, name);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, name);
    manifestLines.push(JSON.stringify({ path: name, size: Buffer.byteLength(name) }));
  }
  const manifestPath = path.join(root, 'manifest.jsonl');
  writeFileSync(manifestPath, manifestLines.map((line) => `${line}\n`).join(''));
  writeFileSync(path.join(codeDirectory, 'score.py'), options.script);

  const spec: LocalJobSpec = {
    jobName,
    manifestPath,
    inputRoot,
    codeDirectory,
    entryScript: 'score.py',
    programArguments: [],
    miniBatchSize: 2,
    processCount: 2,
    runInvocationTimeout: 10,
    maxRetries: 0,
    errorThreshold: -1,
    miniBatchErrorThreshold: -1,
    outputAction: 'append_row',
    appendRowFileName: 'results.txt',
    pythonExecutable: defaultPythonExecutable(),
    environment: { STATE_DIR: stateDir },
    ...options.spec,
  };
  return { root, jobFolder, inputRoot, codeDirectory, stateDir, spec, fileNames };
}

const TERMINAL = new Set(['Completed', 'Failed', 'Canceled']);

/** Polls the job's status until `accept` returns true; throws with the last status after `timeoutMs`. */
export async function waitForStatus(
  jobFolder: string,
  accept: (status: LocalJobStatus) => boolean,
  timeoutMs = 60_000,
): Promise<LocalJobStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: LocalJobStatus | undefined;
  while (Date.now() < deadline) {
    last = await readLocalJobStatus(jobFolder);
    if (accept(last)) return last;
    await sleep(20);
  }
  throw new Error(`job ${jobFolder} did not reach the expected status within ${timeoutMs} ms; last status: ${JSON.stringify(last)}`);
}

export function waitForTerminal(jobFolder: string): Promise<LocalJobStatus> {
  return waitForStatus(jobFolder, (status) => TERMINAL.has(status.state));
}

/** Starts the job and waits until it reaches a terminal state. */
export async function runJob(job: TestJob): Promise<LocalJobStatus> {
  await startLocalJob(job.jobFolder, job.spec);
  return waitForTerminal(job.jobFolder);
}

/** Returns the rows of the append_row output file, one string per line. */
export function readRows(job: TestJob): string[] {
  const file = path.join(job.jobFolder, 'outputs', job.spec.appendRowFileName);
  if (!existsSync(file)) return [];
  const text = readFileSync(file, 'utf8');
  return text === '' ? [] : text.replace(/\n$/, '').split('\n');
}

/** Returns the names of the marker files in the job's state folder that start with `prefix`. */
export function markers(job: TestJob, prefix: string): string[] {
  return readdirSync(job.stateDir).filter((name) => name.startsWith(prefix));
}

export function readJournal(job: TestJob): Record<string, unknown>[] {
  const file = path.join(job.jobFolder, 'journal.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Returns the driver log's entries whose message equals `message`. */
export function driverLogEntries(job: TestJob, message: string): Record<string, unknown>[] {
  const file = path.join(job.jobFolder, 'logs', 'driver.log');
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((entry) => entry.message === message);
}

export function workerLogs(job: TestJob): string[] {
  return readdirSync(path.join(job.jobFolder, 'logs')).filter((name) => /^worker-\d+\.log$/.test(name));
}

/** Returns whether a process exists and is not a zombie. */
export function isProcessRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Waits until the process is gone; throws after `timeoutMs`. */
export async function waitForProcessExit(pid: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (isProcessRunning(pid)) {
    if (Date.now() > deadline) throw new Error(`process ${pid} still runs after ${timeoutMs} ms`);
    await sleep(20);
  }
}

/** Polls until the job's driver has taken its lock and returns its pid. */
export async function waitForDriverPid(jobFolder: string, timeoutMs = 10_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pid = await localJobDriverPid(jobFolder);
    if (pid !== undefined) return pid;
    if (Date.now() > deadline) throw new Error(`no job driver took the lock of ${jobFolder} within ${timeoutMs} ms`);
    await sleep(10);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Kills the drivers that a test left running and removes the temporary folders. Worker processes notice their
 * driver's death on their own within about a second.
 */
export async function cleanUpTestJobs(): Promise<void> {
  for (const root of createdRoots.splice(0)) {
    const jobFolder = path.join(root, 'jobs', 'test-job');
    if (existsSync(path.join(jobFolder, 'job.json'))) {
      const pid = await localJobDriverPid(jobFolder);
      if (pid !== undefined) {
        process.kill(pid, 'SIGKILL');
        await waitForProcessExit(pid);
      }
    }
    rmSync(root, { recursive: true, force: true });
  }
}
