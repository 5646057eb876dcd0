import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { LocalBackend } from '../../activities/backends/local/local-backend';
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

// faults.repeatMiniBatches: a listed mini-batch runs a second time after its first success and both runs' rows
// are appended, as Azure ML's at-least-once parallel runtime can do after a timeout.

afterEach(cleanUpTestJobs);

/** Entry script helpers: `count_call(name)` counts run() calls per item in STATE_DIR and returns the new count. */
const PRELUDE = `
import os, time
STATE = os.environ["STATE_DIR"]

def count_call(name):
    path = os.path.join(STATE, f"calls-{name}")
    calls = int(open(path).read()) + 1 if os.path.exists(path) else 1
    with open(path, "w") as f:
        f.write(str(calls))
    return calls

def names(batch):
    return [os.path.basename(p) for p in batch]

def init():
    pass
`;

/** Number of run() calls that received the item, from the marker files of `count_call`. */
function runCalls(job: TestJob, name: string): number {
  const file = path.join(job.stateDir, `calls-${name}`);
  return existsSync(file) ? Number(readFileSync(file, 'utf8')) : 0;
}

/** Counts how often each row occurs in the output. */
function rowCounts(job: TestJob): Map<string, number> {
  const counts = new Map<string, number>();
  for (const row of readRows(job)) counts.set(row, (counts.get(row) ?? 0) + 1);
  return counts;
}

describe('repeated mini-batch fault', () => {
  test('listed mini-batches append their rows twice', async () => {
    const job = createTestJob({
      fileCount: 7,
      spec: { miniBatchSize: 2, processCount: 2, faults: { repeatMiniBatches: [1, 3] } },
      script: `${PRELUDE}
def run(batch):
    return [f"{name} call {count_call(name)}" for name in names(batch)]
`,
    });

    const status = await runJob(job);

    expect(status.state).toBe('Completed');
    expect(status.progress).toEqual({
      miniBatchesTotal: 4,
      miniBatchesSucceeded: 4,
      miniBatchesFailed: 0,
      itemsTotal: 7,
      itemsSucceeded: 7,
      itemsFailed: 0,
    });
    for (const name of ['f0.txt', 'f1.txt', 'f4.txt', 'f5.txt']) expect(runCalls(job, name)).toBe(1);
    for (const name of ['f2.txt', 'f3.txt', 'f6.txt']) expect(runCalls(job, name)).toBe(2);
    expect([...readRows(job)].sort()).toEqual([
      'f0.txt call 1',
      'f1.txt call 1',
      'f2.txt call 1',
      'f2.txt call 2',
      'f3.txt call 1',
      'f3.txt call 2',
      'f4.txt call 1',
      'f5.txt call 1',
      'f6.txt call 1',
      'f6.txt call 2',
    ]);

    const journal = readJournal(job);
    expect(journal).toHaveLength(6);
    const repeats = journal.filter((record) => record.repeat === true);
    expect(repeats.map((record) => record.miniBatch).sort()).toEqual([1, 3]);
    expect(repeats.map((record) => record.rows).sort()).toEqual([1, 2]);
    const outputBytes = readFileSync(path.join(job.jobFolder, 'outputs', job.spec.appendRowFileName)).length;
    expect(Math.max(...journal.map((record) => record.outputBytes as number))).toBe(outputBytes);
    expect(driverLogEntries(job, 'Mini-batch ran a second time; its rows are in the output twice')).toHaveLength(2);
  });

  test('second run is retried like a first run', async () => {
    const job = createTestJob({
      fileCount: 4,
      spec: { miniBatchSize: 2, processCount: 1, maxRetries: 1, faults: { repeatMiniBatches: [0] } },
      script: `${PRELUDE}
def run(batch):
    calls = [count_call(name) for name in names(batch)]
    if calls[0] == 2:
        raise RuntimeError("second run fails once")
    return names(batch)
`,
    });

    const status = await runJob(job);

    expect(status.state).toBe('Completed');
    expect(runCalls(job, 'f0.txt')).toBe(3);
    expect(runCalls(job, 'f2.txt')).toBe(1);
    expect([...rowCounts(job)].sort()).toEqual([
      ['f0.txt', 2],
      ['f1.txt', 2],
      ['f2.txt', 1],
      ['f3.txt', 1],
    ]);
    const repeat = readJournal(job).find((record) => record.repeat === true);
    expect(repeat).toMatchObject({ miniBatch: 0, outcome: 'succeeded', attempts: 2, rows: 2 });
  });

  test('failed second run keeps one copy and the counts', async () => {
    const job = createTestJob({
      fileCount: 4,
      spec: { miniBatchSize: 2, processCount: 1, maxRetries: 0, errorThreshold: 0, miniBatchErrorThreshold: 0, faults: { repeatMiniBatches: [1] } },
      script: `${PRELUDE}
def run(batch):
    calls = [count_call(name) for name in names(batch)]
    if calls[0] == 2:
        raise ValueError("second run of f2.txt fails")
    return names(batch)
`,
    });

    const status = await runJob(job);

    expect(status.state).toBe('Completed');
    expect(status.progress.miniBatchesFailed).toBe(0);
    expect(status.progress.itemsFailed).toBe(0);
    expect(runCalls(job, 'f2.txt')).toBe(2);
    expect([...readRows(job)].sort()).toEqual(['f0.txt', 'f1.txt', 'f2.txt', 'f3.txt']);
    const repeat = readJournal(job).find((record) => record.repeat === true);
    expect(repeat).toMatchObject({ miniBatch: 1, outcome: 'failed', rows: 0 });
    expect(JSON.stringify(repeat?.failure)).toContain('second run of f2.txt fails');
  });

  test('failed first run is not repeated', async () => {
    const job = createTestJob({
      fileCount: 4,
      spec: { miniBatchSize: 2, processCount: 1, faults: { repeatMiniBatches: [0] } },
      script: `${PRELUDE}
def run(batch):
    for name in names(batch):
        count_call(name)
    if "f0.txt" in names(batch):
        raise ValueError("cannot score f0.txt")
    return names(batch)
`,
    });

    const status = await runJob(job);

    expect(status.state).toBe('Completed');
    expect(status.progress.miniBatchesFailed).toBe(1);
    expect(runCalls(job, 'f0.txt')).toBe(1);
    expect(readRows(job)).toEqual(['f2.txt', 'f3.txt']);
    expect(readJournal(job).some((record) => record.repeat === true)).toBe(false);
  });

  test('restarted driver finishes an interrupted second run', async () => {
    const job = createTestJob({
      fileCount: 6,
      spec: { miniBatchSize: 2, processCount: 1, runInvocationTimeout: 120, faults: { repeatMiniBatches: [1] } },
      script: `${PRELUDE}
def run(batch):
    calls = [count_call(name) for name in names(batch)]
    if names(batch)[0] == "f2.txt" and calls[0] == 2:
        # The test kills the driver during this call: the second run of mini-batch 1.
        time.sleep(120)
    return names(batch)
`,
    });
    await startLocalJob(job.jobFolder, job.spec);
    const driverPid = await waitForDriverPid(job.jobFolder);
    // The first run of mini-batch 1 is journaled within one driver tick of its success.
    await waitForStatus(
      job.jobFolder,
      () => runCalls(job, 'f2.txt') === 2 && readJournal(job).some((record) => record.miniBatch === 1 && record.repeat === undefined),
    );
    process.kill(driverPid, 'SIGKILL');
    await waitForProcessExit(driverPid);

    await startLocalJob(job.jobFolder, job.spec);
    const status = await waitForTerminal(job.jobFolder);

    expect(status.state).toBe('Completed');
    expect(status.progress.miniBatchesSucceeded).toBe(3);
    expect(status.progress.itemsSucceeded).toBe(6);
    expect(runCalls(job, 'f2.txt')).toBe(3);
    expect([...rowCounts(job)].sort()).toEqual([
      ['f0.txt', 1],
      ['f1.txt', 1],
      ['f2.txt', 2],
      ['f3.txt', 2],
      ['f4.txt', 1],
      ['f5.txt', 1],
    ]);
    const [replayed] = driverLogEntries(job, 'Journal replayed').slice(-1);
    expect(replayed?.repeatRunsPending).toBe(1);
    expect(readJournal(job).filter((record) => record.miniBatch === 1)).toHaveLength(2);
  });

  test('index beyond the last mini-batch fails the job', async () => {
    const job = createTestJob({ fileCount: 4, spec: { miniBatchSize: 2, faults: { repeatMiniBatches: [2] } }, script: `${PRELUDE}
def run(batch):
    return names(batch)
` });

    const status = await runJob(job);

    expect(status.state).toBe('Failed');
    expect(status.error?.message).toBe(
      'faults.repeatMiniBatches lists mini-batch 2, but the job has 2 mini-batches numbered from 0; list only indexes below 2',
    );
    expect(runCalls(job, 'f0.txt')).toBe(0);
  });

  test.each([
    [{ repeatMiniBatches: [-1] }, 'expected repeatMiniBatches to be an array of distinct 0-based mini-batch indexes'],
    [{ repeatMiniBatches: [1, 1] }, 'expected repeatMiniBatches to be an array of distinct 0-based mini-batch indexes'],
    [{ repeatMiniBatches: '1' }, 'expected repeatMiniBatches to be an array of distinct 0-based mini-batch indexes'],
    [{ repeatMiniBatch: [1] }, 'expected an object with no fields other than "repeatMiniBatches", but it has "repeatMiniBatch"'],
    [[1], 'expected an object such as {"repeatMiniBatches": [0, 3]}'],
  ])('invalid faults %j are rejected', async (faults, expected) => {
    const job = createTestJob({ fileCount: 2, script: PRELUDE, spec: { faults: faults as never } });

    await expect(startLocalJob(job.jobFolder, job.spec)).rejects.toThrow(`faults is ${JSON.stringify(faults)}; ${expected}`);
    expect(existsSync(path.join(job.jobFolder, 'job.json'))).toBe(false);
  });

  test('local backend rejects invalid faults', () => {
    const options = { workspaceDir: '/tmp/amlbatch-unused-workspace', secretsFile: '/tmp/amlbatch-unused-secrets.json' };

    expect(() => new LocalBackend({ ...options, faults: { repeatMiniBatches: [0, 0] } })).toThrow(
      new TypeError(
        'LocalBackendOptions.faults is invalid: expected repeatMiniBatches to be an array of distinct 0-based mini-batch indexes, such as [0, 3]',
      ),
    );
    expect(() => new LocalBackend({ ...options, faults: { repeatMiniBatch: [0] } as never })).toThrow(TypeError);
    expect(() => new LocalBackend({ ...options, faults: { repeatMiniBatches: [0, 3] } })).not.toThrow();
  });
});
