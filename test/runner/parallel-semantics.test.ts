import { appendFileSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { localJobOutputPath } from '../../activities/backends/local/runner/local-job';
import {
  cleanUpTestJobs,
  createTestJob,
  driverLogEntries,
  isProcessRunning,
  markers,
  readJournal,
  readRows,
  runJob,
  workerLogs,
} from './runner-helpers';

afterEach(cleanUpTestJobs);

/** Python helpers shared by the entry scripts below; STATE_DIR is a folder the test reads afterwards. */
const PRELUDE = `
import json, os, sys, time
STATE = os.environ["STATE_DIR"]

def mark(name, text=""):
    with open(os.path.join(STATE, name), "w") as f:
        f.write(text)

def count_attempt(key):
    path = os.path.join(STATE, f"attempts-{key}")
    attempt = int(open(path).read()) + 1 if os.path.exists(path) else 1
    mark(f"attempts-{key}", str(attempt))
    return attempt

def names(batch):
    return [os.path.basename(p) for p in batch]
`;

function failedMiniBatchMessages(journal: Record<string, unknown>[]): string[] {
  return journal
    .filter((record) => record.outcome === 'failed')
    .map((record) => (record.failure as { message: string }).message);
}

describe('local parallel runner', () => {
  test('every item gets exactly one row across processes', async () => {
    const job = createTestJob({
      fileCount: 30,
      spec: { processCount: 3, miniBatchSize: 2 },
      script: `${PRELUDE}
def init():
    # Wait until all three processes are initialized, so each of them gets mini-batches.
    mark(f"init-{os.getpid()}")
    deadline = time.time() + 10
    while len([n for n in os.listdir(STATE) if n.startswith("init-")]) < 3:
        if time.time() > deadline:
            raise RuntimeError("the other worker processes did not start within 10 s")
        time.sleep(0.01)

def run(batch):
    time.sleep(0.02)
    return [f"{name} {os.getpid()}" for name in names(batch)]
`,
    });

    const status = await runJob(job);

    expect(status.state).toBe('Completed');
    expect(status.progress).toEqual({
      miniBatchesTotal: 15,
      miniBatchesSucceeded: 15,
      miniBatchesFailed: 0,
      itemsTotal: 30,
      itemsSucceeded: 30,
      itemsFailed: 0,
    });
    const rows = readRows(job);
    const rowNames = rows.map((row) => row.split(' ')[0]);
    expect([...rowNames].sort()).toEqual([...job.fileNames].sort());
    const pids = new Set(rows.map((row) => row.split(' ')[1]));
    expect(pids.size).toBe(3);
    expect(workerLogs(job)).toHaveLength(3);
  });

  test('raising run() is retried until it succeeds', async () => {
    const job = createTestJob({
      fileCount: 4,
      spec: { maxRetries: 2, errorThreshold: 0, miniBatchErrorThreshold: 0 },
      script: `${PRELUDE}
def init():
    pass

def run(batch):
    if count_attempt(names(batch)[0]) < 3:
        raise RuntimeError("transient failure")
    return names(batch)
`,
    });

    const status = await runJob(job);

    expect(status.state).toBe('Completed');
    expect(status.progress.miniBatchesFailed).toBe(0);
    expect([...readRows(job)].sort()).toEqual(job.fileNames);
    expect(readFileSync(path.join(job.stateDir, 'attempts-f0.txt'), 'utf8')).toBe('3');
    expect(readFileSync(path.join(job.stateDir, 'attempts-f2.txt'), 'utf8')).toBe('3');
    expect(driverLogEntries(job, 'Mini-batch attempt failed; retrying')).toHaveLength(4);
  });

  test('mini-batch fails after its retries are used up', async () => {
    const job = createTestJob({
      fileCount: 4,
      spec: { maxRetries: 1 },
      script: `${PRELUDE}
def init():
    pass

def run(batch):
    count_attempt(names(batch)[0])
    if "f0.txt" in names(batch):
        raise ValueError("cannot score f0.txt")
    return names(batch)
`,
    });

    const status = await runJob(job);

    expect(status.state).toBe('Completed');
    expect(status.progress.miniBatchesFailed).toBe(1);
    expect(status.progress.itemsFailed).toBe(2);
    expect(readFileSync(path.join(job.stateDir, 'attempts-f0.txt'), 'utf8')).toBe('2');
    expect(readRows(job).sort()).toEqual(['f2.txt', 'f3.txt']);
    const failure = readJournal(job).find((record) => record.outcome === 'failed');
    expect(failure?.miniBatch).toBe(0);
    expect(JSON.stringify(failure?.failure)).toContain('cannot score f0.txt');
  });

  test('timed-out run() kills and replaces the process', async () => {
    const job = createTestJob({
      fileCount: 2,
      spec: { processCount: 1, miniBatchSize: 1, runInvocationTimeout: 1, maxRetries: 1 },
      script: `${PRELUDE}
import subprocess

def init():
    mark(f"init-{os.getpid()}")

def run(batch):
    if names(batch)[0] == "f0.txt" and count_attempt("f0") == 1:
        child = subprocess.Popen(["sleep", "60"])
        mark("hung-worker", str(os.getpid()))
        mark("hung-child", str(child.pid))
        time.sleep(60)
    return names(batch)
`,
    });

    const status = await runJob(job);

    expect(status.state).toBe('Completed');
    expect(readRows(job).sort()).toEqual(['f0.txt', 'f1.txt']);
    expect(markers(job, 'init-')).toHaveLength(2);
    expect(workerLogs(job)).toHaveLength(2);
    const hungWorker = Number(readFileSync(path.join(job.stateDir, 'hung-worker'), 'utf8'));
    const hungChild = Number(readFileSync(path.join(job.stateDir, 'hung-child'), 'utf8'));
    expect(isProcessRunning(hungWorker)).toBe(false);
    expect(isProcessRunning(hungChild)).toBe(false);
    expect(driverLogEntries(job, 'Mini-batch timed out; killing the worker process')).toHaveLength(1);
  });

  test('process exiting in run() is replaced and retried', async () => {
    const job = createTestJob({
      fileCount: 2,
      spec: { processCount: 1, miniBatchSize: 1, maxRetries: 1 },
      script: `${PRELUDE}
def init():
    pass

def run(batch):
    if names(batch)[0] == "f0.txt" and count_attempt("f0") == 1:
        print("exiting inside run()", flush=True)
        os._exit(5)
    return names(batch)
`,
    });

    const status = await runJob(job);

    expect(status.state).toBe('Completed');
    expect(readRows(job).sort()).toEqual(['f0.txt', 'f1.txt']);
    expect(workerLogs(job)).toHaveLength(2);
    expect(driverLogEntries(job, 'Worker process exited during run')).toEqual([expect.objectContaining({ code: 5, miniBatch: 0 })]);
    expect(readFileSync(path.join(job.jobFolder, 'logs', 'worker-0.log'), 'utf8')).toContain('exiting inside run()');
  });

  test('short return fails the mini-batch', async () => {
    const job = createTestJob({
      fileCount: 6,
      spec: { maxRetries: 1 },
      script: `${PRELUDE}
def init():
    pass

def run(batch):
    if "f2.txt" in names(batch):
        return names(batch)[:-1]
    return names(batch)
`,
    });

    const status = await runJob(job);

    expect(status.state).toBe('Completed');
    expect(status.progress.miniBatchesFailed).toBe(1);
    expect(status.progress.itemsFailed).toBe(2);
    expect(readRows(job).sort()).toEqual(['f0.txt', 'f1.txt', 'f4.txt', 'f5.txt']);
    const messages = failedMiniBatchMessages(readJournal(job));
    expect(messages).toHaveLength(1);
    expect(messages[0]).toContain('returned 1 elements for mini-batch 1 of 2 items');
  });

  test('extra rows fail the mini-batch', async () => {
    const job = createTestJob({
      fileCount: 4,
      script: `${PRELUDE}
def init():
    pass

def run(batch):
    if "f0.txt" in names(batch):
        return names(batch) + ["surplus"]
    return names(batch)
`,
    });

    const status = await runJob(job);

    expect(status.state).toBe('Completed');
    expect(status.progress.miniBatchesFailed).toBe(1);
    expect(readRows(job).sort()).toEqual(['f2.txt', 'f3.txt']);
    expect(failedMiniBatchMessages(readJournal(job))[0]).toContain('returned 3 elements for mini-batch 0 of 2 items');
  });

  const failOnePair = `${PRELUDE}
def init():
    pass

def run(batch):
    if "f0.txt" in names(batch) or "f4.txt" in names(batch):
        raise RuntimeError(f"bad input {names(batch)[0]}")
    return names(batch)
`;

  test.each([
    { errorThreshold: 3, state: 'Failed' },
    { errorThreshold: 4, state: 'Completed' },
    { errorThreshold: -1, state: 'Completed' },
  ])('errorThreshold $errorThreshold with 4 failed items ends $state', async ({ errorThreshold, state }) => {
    const job = createTestJob({ fileCount: 8, spec: { processCount: 1, errorThreshold }, script: failOnePair });

    const status = await runJob(job);

    expect(status.state).toBe(state);
    if (state === 'Failed') {
      expect(status.error?.message).toContain('4 failed items exceed errorThreshold 3');
      expect(status.error?.message).toContain('bad input f4.txt');
      expect(status.error?.traceback).toContain('RuntimeError: bad input f4.txt');
    } else {
      expect(status.progress.itemsFailed).toBe(4);
      expect(readRows(job).sort()).toEqual(['f2.txt', 'f3.txt', 'f6.txt', 'f7.txt']);
    }
  });

  test.each([
    { miniBatchErrorThreshold: 1, state: 'Failed' },
    { miniBatchErrorThreshold: 2, state: 'Completed' },
    { miniBatchErrorThreshold: -1, state: 'Completed' },
  ])('miniBatchErrorThreshold $miniBatchErrorThreshold with 2 failed mini-batches ends $state', async ({ miniBatchErrorThreshold, state }) => {
    const job = createTestJob({ fileCount: 8, spec: { processCount: 1, miniBatchErrorThreshold }, script: failOnePair });

    const status = await runJob(job);

    expect(status.state).toBe(state);
    if (state === 'Failed') {
      expect(status.error?.message).toContain('2 failed mini-batches exceed miniBatchErrorThreshold 1');
    } else {
      expect(status.progress.miniBatchesFailed).toBe(2);
    }
  });

  test('init failure fails the job with the traceback', async () => {
    const job = createTestJob({
      script: `${PRELUDE}
def load_model():
    raise FileNotFoundError("model.pkl is missing")

def init():
    mark(f"init-{os.getpid()}")
    load_model()

def run(batch):
    mark("run-called")
    return names(batch)
`,
    });

    const status = await runJob(job);

    expect(status.state).toBe('Failed');
    expect(status.error?.message).toContain('init() in entry script');
    expect(status.error?.message).toContain('model.pkl is missing');
    expect(status.error?.traceback).toContain('in load_model');
    expect(status.error?.traceback).toContain('FileNotFoundError: model.pkl is missing');
    expect(markers(job, 'run-called')).toHaveLength(0);
    for (const marker of markers(job, 'init-')) expect(isProcessRunning(Number(marker.slice('init-'.length)))).toBe(false);
  });

  test('missing run() fails the job naming the script', async () => {
    const job = createTestJob({ script: 'def init():\n    pass\n' });

    const status = await runJob(job);

    expect(status.state).toBe('Failed');
    expect(status.error?.message).toContain(`entry script ${path.join(job.codeDirectory, 'score.py')} does not define a callable run()`);
  });

  test('import error in the entry script fails the job', async () => {
    const job = createTestJob({ script: 'import module_that_does_not_exist\n\ndef init():\n    pass\n\ndef run(batch):\n    return batch\n' });

    const status = await runJob(job);

    expect(status.state).toBe('Failed');
    expect(status.error?.message).toContain('importing entry script');
    expect(status.error?.traceback).toContain("No module named 'module_that_does_not_exist'");
  });

  test('summary_only writes no output file', async () => {
    const job = createTestJob({
      spec: { outputAction: 'summary_only' },
      script: `${PRELUDE}
def init():
    pass

def run(batch):
    return names(batch)
`,
    });

    const status = await runJob(job);

    expect(status.state).toBe('Completed');
    expect(status.progress.itemsSucceeded).toBe(4);
    expect(readdirSync(path.join(job.jobFolder, 'outputs'))).toEqual([]);
    expect(localJobOutputPath(job.jobFolder, job.spec)).toBeUndefined();
  });

  test('shutdown() is called in every process', async () => {
    const job = createTestJob({
      fileCount: 8,
      script: `${PRELUDE}
def init():
    mark(f"init-{os.getpid()}")

def run(batch):
    return names(batch)

def shutdown():
    mark(f"shutdown-{os.getpid()}")
`,
    });

    const status = await runJob(job);

    expect(status.state).toBe('Completed');
    const initialized = markers(job, 'init-').map((name) => name.slice('init-'.length));
    const shutDown = markers(job, 'shutdown-').map((name) => name.slice('shutdown-'.length));
    expect(initialized).toHaveLength(2);
    expect(shutDown.sort()).toEqual(initialized.sort());
  });

  test('unusual file names reach run() unchanged', async () => {
    const fileNames = ['with space.txt', 'hash#1.txt', '100%.txt', 'per%20cent.txt', 'données é.txt', '日本語.txt', "quote'\".txt", 'sub dir/nested #2.txt'];
    const job = createTestJob({
      fileNames,
      spec: { miniBatchSize: 3 },
      script: `${PRELUDE}
def init():
    pass

def run(batch):
    return [{"path": p, "exists": os.path.isfile(p)} for p in batch]
`,
    });

    const status = await runJob(job);

    expect(status.state).toBe('Completed');
    const rows = readRows(job).map((row) => JSON.parse(row) as { path: string; exists: boolean });
    expect(rows.map((row) => row.path).sort()).toEqual(fileNames.map((name) => path.join(job.inputRoot, name)).sort());
    expect(rows.every((row) => row.exists)).toBe(true);
  });

  test('rows are converted as append_row does', async () => {
    const job = createTestJob({
      fileCount: 6,
      spec: { miniBatchSize: 6 },
      script: `${PRELUDE}
def init():
    pass

def run(batch):
    return ["plain text", {"score": 0.5, "label": "é"}, [1, "two"], 42, 1.5, None]
`,
    });

    const status = await runJob(job);

    expect(status.state).toBe('Completed');
    expect(readRows(job)).toEqual(['plain text', '{"score": 0.5, "label": "é"}', '[1, "two"]', '42', '1.5', 'None']);
  });

  test('row with a line break fails the mini-batch', async () => {
    const job = createTestJob({
      fileCount: 4,
      script: `${PRELUDE}
def init():
    pass

def run(batch):
    if "f0.txt" in names(batch):
        return ["first\\nsecond", "ok"]
    return names(batch)
`,
    });

    const status = await runJob(job);

    expect(status.state).toBe('Completed');
    expect(status.progress.miniBatchesFailed).toBe(1);
    expect(readRows(job).sort()).toEqual(['f2.txt', 'f3.txt']);
    expect(failedMiniBatchMessages(readJournal(job))[0]).toContain('returned a row with a line break at index 0');
  });

  test('run() returning None fails the mini-batch', async () => {
    const job = createTestJob({
      fileCount: 2,
      script: `${PRELUDE}
def init():
    pass

def run(batch):
    return None
`,
    });

    const status = await runJob(job);

    expect(status.state).toBe('Failed');
    expect(status.error?.message).toContain('no mini-batch succeeded');
    expect(status.error?.message).toContain('returned NoneType; it must return a list, tuple or pandas DataFrame');
  });

  test('script sees its arguments, environment and prints to its log', async () => {
    const job = createTestJob({
      fileCount: 2,
      spec: { processCount: 1, programArguments: ['--data', '${{inputs.input_data}}', '--mode=fast'] },
      script: `${PRELUDE}
import score_helper

def init():
    print("hello from init", flush=True)
    mark("argv", json.dumps(sys.argv))
    mark("cwd", os.getcwd())
    mark("output-path", os.environ["AZUREML_BI_OUTPUT_PATH"])

def run(batch):
    print("scoring", len(batch), "files")
    return [score_helper.label(name) for name in names(batch)]
`,
    });
    writeFileSync(path.join(job.codeDirectory, 'score_helper.py'), 'def label(name):\n    return f"label:{name}"\n');

    const status = await runJob(job);

    expect(status.state).toBe('Completed');
    expect(readRows(job).sort()).toEqual(['label:f0.txt', 'label:f1.txt']);
    const argv = JSON.parse(readFileSync(path.join(job.stateDir, 'argv'), 'utf8')) as string[];
    expect(argv).toEqual([path.join(job.codeDirectory, 'score.py'), '--data', job.inputRoot, '--mode=fast']);
    expect(readFileSync(path.join(job.stateDir, 'cwd'), 'utf8')).toBe(job.codeDirectory);
    expect(readFileSync(path.join(job.stateDir, 'output-path'), 'utf8')).toBe(path.join(job.jobFolder, 'outputs'));
    const log = readFileSync(path.join(job.jobFolder, 'logs', 'worker-0.log'), 'utf8');
    expect(log).toContain('hello from init');
    expect(log).toContain('scoring 2 files');
  });

  test('invalid manifest line fails the job before run()', async () => {
    const job = createTestJob({
      script: `${PRELUDE}
def init():
    mark("init-called")

def run(batch):
    return names(batch)
`,
    });
    appendFileSync(job.spec.manifestPath, '{"path": "../outside.txt", "size": 1}\n');

    const status = await runJob(job);

    expect(status.state).toBe('Failed');
    expect(status.error?.message).toContain(`manifest ${job.spec.manifestPath} line 5`);
    expect(status.error?.message).toContain('leaves the input root');
    expect(existsSync(path.join(job.stateDir, 'init-called'))).toBe(false);
  });

  test('missing Python interpreter fails the job', async () => {
    const job = createTestJob({ script: 'def init():\n    pass\n\ndef run(batch):\n    return batch\n' });
    job.spec.pythonExecutable = path.join(job.root, 'no-such-python');

    const status = await runJob(job);

    expect(status.state).toBe('Failed');
    expect(status.error?.message).toContain(`could not start the Python interpreter ${job.spec.pythonExecutable}`);
  });
});
