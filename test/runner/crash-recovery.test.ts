import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { compiledModulePath } from '../../common/project-paths';
import { startLocalJob } from '../../activities/backends/local/runner/local-job';
import type { TestJob } from './runner-helpers';
import {
  cleanUpTestJobs,
  createTestJob,
  driverLogEntries,
  readJournal,
  readRows,
  runJob,
  waitForDriverPid,
  waitForProcessExit,
  waitForStatus,
  waitForTerminal,
} from './runner-helpers';

afterEach(cleanUpTestJobs);

const SLOW_SCRIPT = `
import os, time

def init():
    pass

def run(batch):
    time.sleep(0.04)
    return [f"{os.path.basename(p)} {os.getpid()}" for p in batch]
`;

function rowNames(job: TestJob): string[] {
  return readRows(job).map((row) => row.split(' ')[0]);
}

/** Starts (or restarts) the job, waits until `succeeded` mini-batches are done and kills the driver with SIGKILL. */
async function killDriverAfter(job: TestJob, succeeded: number): Promise<void> {
  await startLocalJob(job.jobFolder, job.spec);
  const pid = await waitForDriverPid(job.jobFolder);
  await waitForStatus(job.jobFolder, (status) => status.progress.miniBatchesSucceeded >= succeeded || status.state === 'Completed');
  process.kill(pid, 'SIGKILL');
  await waitForProcessExit(pid);
}

describe('job driver crash recovery', () => {
  test('driver killed repeatedly finishes with one row per item', async () => {
    const job = createTestJob({ fileCount: 120, spec: { miniBatchSize: 2, processCount: 2 }, script: SLOW_SCRIPT });

    // Kill points: before any progress, then at several depths of the job.
    for (const succeeded of [0, 5, 15, 25, 35]) {
      await killDriverAfter(job, succeeded);
      const status = JSON.parse(readFileSync(path.join(job.jobFolder, 'status.json'), 'utf8')) as { state: string };
      expect(status.state).not.toBe('Completed');
    }
    await startLocalJob(job.jobFolder, job.spec);
    const status = await waitForTerminal(job.jobFolder);

    expect(status.state).toBe('Completed');
    expect(status.progress.itemsSucceeded).toBe(120);
    expect(rowNames(job).sort()).toEqual([...job.fileNames].sort());
    const journaled = readJournal(job).map((record) => record.miniBatch as number);
    expect(journaled).toHaveLength(60);
    expect(new Set(journaled).size).toBe(60);
    expect(driverLogEntries(job, 'Job driver starting')).toHaveLength(6);
  });

  test('workers of a killed driver exit by themselves', async () => {
    const job = createTestJob({
      fileCount: 2,
      spec: { processCount: 1, runInvocationTimeout: 60 },
      script: `
import os, subprocess, time
STATE = os.environ["STATE_DIR"]

def init():
    pass

def run(batch):
    child = subprocess.Popen(["sleep", "60"])
    with open(os.path.join(STATE, "pids"), "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    time.sleep(60)
    return batch
`,
    });
    await startLocalJob(job.jobFolder, job.spec);
    const driverPid = await waitForDriverPid(job.jobFolder);
    const pidsFile = path.join(job.stateDir, 'pids');
    await waitForStatus(job.jobFolder, () => existsSync(pidsFile) && readFileSync(pidsFile, 'utf8') !== '');

    process.kill(driverPid, 'SIGKILL');
    const [workerPid, childPid] = readFileSync(pidsFile, 'utf8').split(' ').map(Number);

    await waitForProcessExit(workerPid ?? 0, 5_000);
    await waitForProcessExit(childPid ?? 0, 5_000);
  });

  test('restart drops torn output rows and journal lines', async () => {
    const job = createTestJob({ fileCount: 40, spec: { miniBatchSize: 2, processCount: 1 }, script: SLOW_SCRIPT });
    await killDriverAfter(job, 6);

    // Simulate a driver killed in the middle of an append: a row without its journal line and half a journal line.
    appendFileSync(path.join(job.jobFolder, 'outputs', 'results.txt'), 'torn row without a journal line');
    appendFileSync(path.join(job.jobFolder, 'journal.jsonl'), '{"miniBatch": 19, "outco');
    await startLocalJob(job.jobFolder, job.spec);
    const status = await waitForTerminal(job.jobFolder);

    expect(status.state).toBe('Completed');
    expect(readRows(job).some((row) => row.includes('torn row'))).toBe(false);
    expect(rowNames(job).sort()).toEqual([...job.fileNames].sort());
    expect(readJournal(job)).toHaveLength(20);
    const [replayed] = driverLogEntries(job, 'Journal replayed').slice(-1);
    expect(replayed?.droppedOutputBytes).toBeGreaterThanOrEqual('torn row without a journal line'.length);
  });

  test('stale lock of a dead pid is taken over', async () => {
    const job = createTestJob({ fileCount: 4, script: SLOW_SCRIPT });
    const exited = spawnSync('true');
    expect(exited.pid).toBeGreaterThan(0);
    mkdirSync(job.jobFolder, { recursive: true });
    writeFileSync(path.join(job.jobFolder, 'driver.lock'), `${exited.pid}\n`);

    const status = await runJob(job);

    expect(status.state).toBe('Completed');
    expect(rowNames(job).sort()).toEqual(job.fileNames);
  });

  test('second driver exits while the first holds the lock', async () => {
    const job = createTestJob({ fileCount: 40, spec: { processCount: 1 }, script: SLOW_SCRIPT });
    await startLocalJob(job.jobFolder, job.spec);
    const firstDriver = await waitForDriverPid(job.jobFolder);

    const second = spawn(process.execPath, [compiledModulePath('activities/backends/local/runner/job-driver'), job.jobFolder], {
      stdio: 'ignore',
    });
    const [exitCode] = (await once(second, 'exit')) as [number | null];
    const status = await waitForTerminal(job.jobFolder);

    expect(exitCode).toBe(0);
    expect(driverLogEntries(job, 'Another job driver holds the lock; exiting')).toEqual([
      expect.objectContaining({ pid: second.pid, holderPid: firstDriver }),
    ]);
    expect(status.state).toBe('Completed');
    expect(status.driverPid).toBe(firstDriver);
    expect(rowNames(job).sort()).toEqual([...job.fileNames].sort());
  });

  test('restarting a finished job changes nothing', async () => {
    const job = createTestJob({ fileCount: 4, script: SLOW_SCRIPT });
    const first = await runJob(job);

    const again = await startLocalJob(job.jobFolder, job.spec);
    const second = JSON.parse(readFileSync(path.join(job.jobFolder, 'status.json'), 'utf8')) as unknown;

    expect(again).toEqual({ resumed: true });
    expect(second).toEqual(first);
    expect(driverLogEntries(job, 'Job driver starting')).toHaveLength(1);
  });
});
