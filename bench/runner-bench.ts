/**
 * Benchmark of the local parallel runner: `npx tsc -p . && node dist/bench/runner-bench.js`.
 *
 * It runs the real job driver with real Python worker processes and measures three things.
 *
 * (a) Throughput of 2 processes against the ideal, which is twice the measured rate of 1 process. The entry
 *     script is CPU-bound: a fixed pure-Python loop per item, calibrated at start-up to take about 5 ms. The
 *     same loop also runs in bare Python processes without the runner. Their 2-process scaling is the machine's
 *     own ceiling for the runner.
 * (b) Dispatch overhead per mini-batch with a no-op run(). It is the time difference between two job sizes
 *     divided by the difference in mini-batches, so process start-up and init() cancel out.
 * (c) The driver's time and peak memory on a 1,000,000-line manifest with a no-op run().
 *
 * Each measurement runs a few times and reports the median. It prints a markdown table and exits.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defaultPythonExecutable } from '../common/project-paths';
import type { LocalJobSpec, LocalJobStatus } from '../activities/backends/local/runner/job-spec';
import { localJobDriverPid, readLocalJobStatus, startLocalJob } from '../activities/backends/local/runner/local-job';

/** Runs per measurement; this machine's CPU speed drifts by 10-20 % between runs, so ratios use adjacent pairs. */
const REPEATS = 5;
const TARGET_ITEM_MS = 5;
const THROUGHPUT_ITEMS_PER_PROCESS = 400;
const THROUGHPUT_MINI_BATCH_SIZE = 10;
const DISPATCH_SMALL_JOB = 500;
const DISPATCH_LARGE_JOB = 5000;
const LARGE_MANIFEST_ITEMS = 1_000_000;
const LARGE_MANIFEST_MINI_BATCH_SIZE = 1000;
/** No single job may take longer than this; the benchmark aborts instead of hanging. */
const JOB_TIMEOUT_MS = 300_000;

const CPU_SCRIPT = `
import os
ITERATIONS = int(os.environ["BENCH_ITERATIONS"])

def work():
    total = 0
    for i in range(ITERATIONS):
        total += i * i % 7
    return total

def init():
    pass

def run(batch):
    return [f"{os.path.basename(p)} {work()}" for p in batch]
`;

const NO_OP_SCRIPT = `
def init():
    pass

def run(batch):
    return batch
`;

interface JobResult {
  items: number;
  /** Driver-measured time from start to the terminal status, in ms. */
  elapsedMs: number;
  /** Highest VmHWM (peak resident memory) of the driver seen while it ran, in MiB, or undefined. */
  driverPeakMiB?: number;
}

const workRoot = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-runner-bench-'));
let jobCounter = 0;

function writeManifest(items: number): string {
  const file = path.join(workRoot, `manifest-${items}.jsonl`);
  const lines: string[] = [];
  for (let index = 0; index < items; index += 1) lines.push(`{"path": "item-${index}.bin", "size": 0}\n`);
  writeFileSync(file, lines.join(''));
  return file;
}

function writeCode(name: string, script: string): string {
  const folder = path.join(workRoot, name);
  mkdirSync(folder, { recursive: true });
  writeFileSync(path.join(folder, 'score.py'), script);
  return folder;
}

/**
 * Runs one job to the end through the local-job API. Status is polled every `pollMs`; a short interval also
 * samples the driver's peak memory more often but takes CPU from the workers.
 */
async function runJob(spec: Omit<LocalJobSpec, 'jobName'>, items: number, pollMs = 250): Promise<JobResult> {
  jobCounter += 1;
  const jobName = `bench-${jobCounter}`;
  const jobFolder = path.join(workRoot, 'jobs', jobName);
  await startLocalJob(jobFolder, { ...spec, jobName });

  const deadline = Date.now() + JOB_TIMEOUT_MS;
  let peakKiB = 0;
  let status: LocalJobStatus;
  for (;;) {
    status = await readLocalJobStatus(jobFolder);
    if (status.state === 'Completed' || status.state === 'Failed' || status.state === 'Canceled') break;
    if (Date.now() > deadline) throw new Error(`benchmark job ${jobName} did not finish within ${JOB_TIMEOUT_MS} ms`);
    peakKiB = Math.max(peakKiB, readPeakKiB(await localJobDriverPid(jobFolder)));
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
  if (status.state !== 'Completed' || status.startedAt === undefined || status.endedAt === undefined) {
    throw new Error(`benchmark job ${jobName} ended ${status.state}: ${status.error?.message ?? 'no error message'}`);
  }
  return {
    items,
    elapsedMs: Date.parse(status.endedAt) - Date.parse(status.startedAt),
    driverPeakMiB: peakKiB > 0 ? peakKiB / 1024 : undefined,
  };
}

/** Returns VmHWM of a process in KiB, or 0 when it cannot be read. */
function readPeakKiB(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match === null ? 0 : Number(match[1]);
  } catch {
    return 0;
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

/** Python program that calls CPU_SCRIPT's `work()` once per item (argument 1) and prints the seconds it took. */
const RAW_LOOP_PROGRAM = `
import os, sys, time
${CPU_SCRIPT}
start = time.perf_counter()
for _ in range(int(sys.argv[1])):
    work()
print(time.perf_counter() - start)
`;

/** Runs the CPU-bound loop for `items` items in `processes` parallel Python processes, without the runner. */
function rawLoopSeconds(python: string, iterations: number, items: number, processes: number): number {
  const command = Array.from({ length: processes }, () => `"${python}" -c "$RAW_LOOP_PROGRAM" ${items} &`).join(' ');
  const output = execFileSync('bash', ['-c', `${command} wait`], {
    encoding: 'utf8',
    env: { ...process.env, RAW_LOOP_PROGRAM, BENCH_ITERATIONS: String(iterations) },
  });
  return Math.max(...output.trim().split('\n').map(Number));
}

/** Finds the loop length of `work()` that takes about TARGET_ITEM_MS in one Python process on this machine. */
function calibrateIterations(python: string): number {
  const probeIterations = 200_000;
  const probeItems = 10;
  const seconds = median(Array.from({ length: REPEATS }, () => rawLoopSeconds(python, probeIterations, probeItems, 1)));
  return Math.round((probeIterations * probeItems * TARGET_ITEM_MS) / (seconds * 1000));
}

/** Measures how well the machine itself runs two CPU-bound Python processes at once: the ceiling for the runner. */
function measureMachineScaling(python: string, iterations: number): number {
  const ratios: number[] = [];
  for (let repeat = 0; repeat < REPEATS; repeat += 1) {
    const oneLoopSeconds = rawLoopSeconds(python, iterations, THROUGHPUT_ITEMS_PER_PROCESS, 1);
    const twoLoopsSeconds = rawLoopSeconds(python, iterations, THROUGHPUT_ITEMS_PER_PROCESS, 2);
    ratios.push(oneLoopSeconds / twoLoopsSeconds);
  }
  return median(ratios);
}

function baseSpec(codeDirectory: string, manifestPath: string): Omit<LocalJobSpec, 'jobName'> {
  return {
    manifestPath,
    inputRoot: path.join(workRoot, 'input'),
    codeDirectory,
    entryScript: 'score.py',
    programArguments: [],
    miniBatchSize: 1,
    processCount: 1,
    runInvocationTimeout: 60,
    maxRetries: 0,
    errorThreshold: -1,
    miniBatchErrorThreshold: -1,
    outputAction: 'append_row',
    appendRowFileName: 'results.txt',
    pythonExecutable: defaultPythonExecutable(),
    environment: {},
  };
}

async function measureThroughput(iterations: number): Promise<{ rate1: number; rate2: number; ratio: number }> {
  const code = writeCode('cpu', CPU_SCRIPT);
  const oneProcessManifest = writeManifest(THROUGHPUT_ITEMS_PER_PROCESS);
  const twoProcessManifest = writeManifest(2 * THROUGHPUT_ITEMS_PER_PROCESS);
  const settings = { miniBatchSize: THROUGHPUT_MINI_BATCH_SIZE, environment: { BENCH_ITERATIONS: String(iterations) } };

  const rates1: number[] = [];
  const rates2: number[] = [];
  const ratios: number[] = [];
  for (let repeat = 0; repeat < REPEATS; repeat += 1) {
    const oneProcessJob = await runJob({ ...baseSpec(code, oneProcessManifest), ...settings, processCount: 1 }, THROUGHPUT_ITEMS_PER_PROCESS);
    const twoProcessJob = await runJob({ ...baseSpec(code, twoProcessManifest), ...settings, processCount: 2 }, 2 * THROUGHPUT_ITEMS_PER_PROCESS);
    const rate1 = oneProcessJob.items / (oneProcessJob.elapsedMs / 1000);
    const rate2 = twoProcessJob.items / (twoProcessJob.elapsedMs / 1000);
    rates1.push(rate1);
    rates2.push(rate2);
    ratios.push(rate2 / (2 * rate1));
  }
  return { rate1: median(rates1), rate2: median(rates2), ratio: median(ratios) };
}

async function measureDispatchOverhead(): Promise<{ small: number; large: number; perMiniBatchMs: number }> {
  const code = writeCode('noop', NO_OP_SCRIPT);
  const smallManifest = writeManifest(DISPATCH_SMALL_JOB);
  const largeManifest = writeManifest(DISPATCH_LARGE_JOB);
  const small: number[] = [];
  const large: number[] = [];
  for (let repeat = 0; repeat < REPEATS; repeat += 1) {
    small.push((await runJob(baseSpec(code, smallManifest), DISPATCH_SMALL_JOB)).elapsedMs);
    large.push((await runJob(baseSpec(code, largeManifest), DISPATCH_LARGE_JOB)).elapsedMs);
  }
  const smallMs = median(small);
  const largeMs = median(large);
  return { small: smallMs, large: largeMs, perMiniBatchMs: (largeMs - smallMs) / (DISPATCH_LARGE_JOB - DISPATCH_SMALL_JOB) };
}

async function measureLargeManifest(): Promise<JobResult> {
  const code = writeCode('noop-large', NO_OP_SCRIPT);
  const manifest = writeManifest(LARGE_MANIFEST_ITEMS);
  const spec = { ...baseSpec(code, manifest), miniBatchSize: LARGE_MANIFEST_MINI_BATCH_SIZE, processCount: 2, outputAction: 'summary_only' as const };
  return runJob(spec, LARGE_MANIFEST_ITEMS, 20);
}

function cpuModel(): string {
  const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
  return match?.[1] ?? 'unknown';
}

async function main(): Promise<void> {
  const python = defaultPythonExecutable();
  process.stdout.write(`machine: ${os.cpus().length} CPUs (${cpuModel()}), Node ${process.version}\n\n`);

  const iterations = calibrateIterations(python);
  const machineScaling = measureMachineScaling(python, iterations);
  const throughput = await measureThroughput(iterations);
  const dispatch = await measureDispatchOverhead();
  const large = await measureLargeManifest();

  const rows = [
    ['Measurement', 'Result', 'Goal'],
    ['---', '---', '---'],
    [
      'Machine ceiling: 2 bare Python loops at once / (2 × 1 loop), no runner',
      machineScaling.toFixed(3),
      '',
    ],
    [`CPU-bound run(), 1 process (${iterations} loop iterations ≈ ${TARGET_ITEM_MS} ms per item)`, `${throughput.rate1.toFixed(1)} items/s`, ''],
    [`CPU-bound run(), 2 processes`, `${throughput.rate2.toFixed(1)} items/s`, ''],
    ['Runner: 2-process throughput / (2 × 1-process throughput)', throughput.ratio.toFixed(3), '≥ 0.9'],
    [
      `Dispatch overhead per mini-batch, no-op run() (${DISPATCH_SMALL_JOB} vs ${DISPATCH_LARGE_JOB} mini-batches: ${dispatch.small} ms vs ${dispatch.large} ms)`,
      `${dispatch.perMiniBatchMs.toFixed(3)} ms`,
      '< 2 ms',
    ],
    [
      `${LARGE_MANIFEST_ITEMS.toLocaleString('en-US')}-line manifest, mini-batch size ${LARGE_MANIFEST_MINI_BATCH_SIZE}, 2 processes, no-op run()`,
      `${(large.elapsedMs / 1000).toFixed(2)} s, driver peak RSS ${large.driverPeakMiB?.toFixed(0) ?? 'unknown'} MiB (sampled)`,
      '',
    ],
  ];
  process.stdout.write(`${rows.map((row) => `| ${row.join(' | ')} |`).join('\n')}\n`);
  process.stdout.write(
    `\nMedians of ${REPEATS} runs; each ratio is the median of ratios of adjacent 1-process and 2-process runs. ` +
      "Runner times come from the driver's startedAt/endedAt, so they include Python start-up and init().\n",
  );
}

main()
  .catch((error: unknown) => {
    process.stderr.write(`runner benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  })
  .finally(() => rmSync(workRoot, { recursive: true, force: true }));
