import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  cancelLocalJob,
  isLocalJobDriverAlive,
  localJobDriverPid,
  localJobOutputPath,
  readLocalJobStatus,
  startLocalJob,
} from '../../activities/backends/local/runner/local-job';
import type { TestJob } from './runner-helpers';
import {
  cleanUpTestJobs,
  createTestJob,
  driverLogEntries,
  isProcessRunning,
  markers,
  readRows,
  waitForDriverPid,
  waitForProcessExit,
  waitForStatus,
  waitForTerminal,
} from './runner-helpers';

afterEach(cleanUpTestJobs);

/** Blocks in run() from the third mini-batch on until the test creates STATE_DIR/release. */
const GATED_SCRIPT = `
import os, subprocess, time
STATE = os.environ["STATE_DIR"]

def init():
    pass

def run(batch):
    name = os.path.basename(batch[0])
    if name not in ("f0.txt", "f1.txt"):
        open(os.path.join(STATE, f"worker-{os.getpid()}"), "w").close()
        child = subprocess.Popen(["sleep", "60"])
        open(os.path.join(STATE, f"child-{child.pid}"), "w").close()
        while not os.path.exists(os.path.join(STATE, "release")):
            time.sleep(0.01)
    return [os.path.basename(p) for p in batch]
`;

function gatedJob(): TestJob {
  return createTestJob({ fileCount: 4, spec: { processCount: 1, miniBatchSize: 1, runInvocationTimeout: 60 }, script: GATED_SCRIPT });
}

function pidsOf(job: TestJob, prefix: string): number[] {
  return markers(job, prefix).map((name) => Number(name.slice(prefix.length)));
}

describe('local job API', () => {
  test('progress is readable while the job runs', async () => {
    const job = gatedJob();
    await startLocalJob(job.jobFolder, job.spec);

    const running = await waitForStatus(job.jobFolder, (status) => status.progress.miniBatchesSucceeded === 2);
    writeFileSync(path.join(job.stateDir, 'release'), '');
    const completed = await waitForTerminal(job.jobFolder);

    expect(running.state).toBe('Running');
    expect(running.progress).toEqual({
      miniBatchesTotal: 4,
      miniBatchesSucceeded: 2,
      miniBatchesFailed: 0,
      itemsTotal: 4,
      itemsSucceeded: 2,
      itemsFailed: 0,
    });
    expect(running.driverPid).toBeGreaterThan(0);
    expect(running.startedAt).toBeDefined();
    expect(completed.state).toBe('Completed');
    expect(completed.progress.itemsSucceeded).toBe(4);
  });

  test('cancel stops the processes and ends Canceled', async () => {
    const job = gatedJob();
    await startLocalJob(job.jobFolder, job.spec);
    const driverPid = await waitForDriverPid(job.jobFolder);
    await waitForStatus(job.jobFolder, () => markers(job, 'child-').length === 1);

    await cancelLocalJob(job.jobFolder);
    const status = await readLocalJobStatus(job.jobFolder);

    expect(status.state).toBe('Canceled');
    expect(status.endedAt).toBeDefined();
    expect(status.progress.miniBatchesSucceeded).toBe(2);
    await waitForProcessExit(driverPid);
    for (const pid of [...pidsOf(job, 'worker-'), ...pidsOf(job, 'child-')]) expect(isProcessRunning(pid)).toBe(false);
    expect(await isLocalJobDriverAlive(job.jobFolder)).toBe(false);
    expect(readRows(job).sort()).toEqual(['f0.txt', 'f1.txt']);
  });

  test('cancel is idempotent and keeps the job canceled', async () => {
    const job = gatedJob();
    await startLocalJob(job.jobFolder, job.spec);
    await waitForStatus(job.jobFolder, () => markers(job, 'worker-').length === 1);

    await cancelLocalJob(job.jobFolder);
    await cancelLocalJob(job.jobFolder);
    const restarted = await startLocalJob(job.jobFolder, job.spec);

    expect(restarted).toEqual({ resumed: true });
    expect((await readLocalJobStatus(job.jobFolder)).state).toBe('Canceled');
    expect(driverLogEntries(job, 'Job driver starting')).toHaveLength(1);
  });

  test('cancel-requested file alone cancels the job', async () => {
    const job = gatedJob();
    await startLocalJob(job.jobFolder, job.spec);
    await waitForStatus(job.jobFolder, () => markers(job, 'worker-').length === 1);

    writeFileSync(path.join(job.jobFolder, 'cancel-requested'), '');
    const status = await waitForTerminal(job.jobFolder);

    expect(status.state).toBe('Canceled');
    for (const pid of pidsOf(job, 'worker-')) expect(isProcessRunning(pid)).toBe(false);
  });

  test('cancel without a driver writes Canceled', async () => {
    const job = gatedJob();
    await startLocalJob(job.jobFolder, job.spec);
    const driverPid = await waitForDriverPid(job.jobFolder);
    process.kill(driverPid, 'SIGKILL');
    await waitForProcessExit(driverPid);

    await cancelLocalJob(job.jobFolder);

    expect((await readLocalJobStatus(job.jobFolder)).state).toBe('Canceled');
  });

  test('starting twice attaches to the running driver', async () => {
    const job = gatedJob();
    const first = await startLocalJob(job.jobFolder, job.spec);
    const driverPid = await waitForDriverPid(job.jobFolder);

    const second = await startLocalJob(job.jobFolder, { ...job.spec, environment: { ...job.spec.environment } });
    writeFileSync(path.join(job.stateDir, 'release'), '');
    const status = await waitForTerminal(job.jobFolder);

    expect(first).toEqual({ resumed: false });
    expect(second).toEqual({ resumed: true });
    expect(await localJobDriverPid(job.jobFolder)).toBeUndefined();
    expect(status.driverPid).toBe(driverPid);
    expect(driverLogEntries(job, 'Job driver starting')).toHaveLength(1);
  });

  test('starting with a different spec names the differing fields', async () => {
    const job = gatedJob();
    await startLocalJob(job.jobFolder, job.spec);

    const changed = { ...job.spec, miniBatchSize: 5, environment: { STATE_DIR: '/elsewhere' } };
    const attempt = startLocalJob(job.jobFolder, changed);

    await expect(attempt).rejects.toThrow(
      `local job test-job already exists in ${job.jobFolder} with a different spec: miniBatchSize, environment differ`,
    );
    const stored = JSON.parse(readFileSync(path.join(job.jobFolder, 'job.json'), 'utf8')) as { miniBatchSize: number };
    expect(stored.miniBatchSize).toBe(1);
  });

  test('invalid spec is rejected before anything is written', async () => {
    const job = gatedJob();

    const attempt = startLocalJob(job.jobFolder, { ...job.spec, processCount: 0 });

    await expect(attempt).rejects.toThrow('processCount is 0; expected an integer of at least 1');
    await expect(readLocalJobStatus(job.jobFolder)).rejects.toThrow('local job not found');
  });

  test('status of a missing job folder says not found', async () => {
    const missing = path.join(os.tmpdir(), 'amlbatch-runner-no-such-job');

    await expect(readLocalJobStatus(missing)).rejects.toThrow(`local job not found: job folder ${missing} does not exist`);
    await expect(cancelLocalJob(missing)).rejects.toThrow('local job not found');
  });

  test('output path points into the outputs folder', () => {
    const job = gatedJob();

    expect(localJobOutputPath(job.jobFolder, job.spec)).toBe(path.join(job.jobFolder, 'outputs', 'results.txt'));
  });
});
