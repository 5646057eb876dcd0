/**
 * Benchmark of the item ledger build: `npx tsc -p . && node dist/bench/ledger-bench.js`.
 *
 * It generates a 1,000,000-item manifest and its results, then builds the ledger in a child process, so the peak
 * resident memory (`process.resourceUsage().maxRSS`) is the build's alone. Two scenarios:
 *   local: the manifest sorted by path, as the local backend writes it, and rows in mini-batch completion order;
 *   azure: the manifest and the rows both shuffled, as a blob listing and Azure ML's unordered append_row output.
 * Both have 1,000 duplicate rows, 2,000 items in failure records, 500 rows that report an error, 100 unknown rows,
 * 50 unkeyed rows and two exclude patterns that match about 1 % of the items. Each scenario runs 3 times and the
 * median is reported. Every child is killed after 120 s, so the benchmark always ends. It prints a markdown table.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildLedger, type LedgerCounts } from '../activities/ledger/build-ledger';

const ITEMS = 1_000_000;
const DUPLICATE_ROWS = 1_000;
const FAILED_MINI_BATCHES = 200;
const MINI_BATCH_SIZE = 10;
const ROW_ERRORS = 500;
const UNKNOWN_ROWS = 100;
const UNKEYED_ROWS = 50;
const EXCLUDE_PATTERNS = ['**/*.tmp', 'scratch/**'];
const REPEATS = 3;
const CHILD_TIMEOUT_MS = 120_000;

interface ChildReport {
  elapsedMs: number;
  maxRssMiB: number;
  counts: LedgerCounts;
}

interface Scenario {
  name: string;
  manifestPath: string;
  resultsPath: string;
  failureRecordsPath: string;
}

/** A deterministic pseudo-random generator (mulberry32), so every run shuffles the same way. */
function randomGenerator(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let value = state;
    value = Math.imul(value ^ (value >>> 15), value | 1);
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61);
    return ((value ^ (value >>> 14)) >>> 0) / 4294967296;
  };
}

/** Orders strings by UTF-16 code units, as the local backend sorts its manifest. */
function compareCodeUnits(a: string, b: string): number {
  if (a < b) return -1;
  if (a > b) return 1;
  return 0;
}

function shuffle<T>(values: T[], random: () => number): void {
  for (let index = values.length - 1; index > 0; index -= 1) {
    const other = Math.floor(random() * (index + 1));
    [values[index], values[other]] = [values[other], values[index]];
  }
}

/** Item paths: 1 % under `scratch/` or ending in `.tmp`, so the exclude patterns match about 1 % of the items. */
function itemPaths(): string[] {
  const paths: string[] = [];
  for (let index = 0; index < ITEMS; index += 1) {
    const folder = `class-${index % 10}/batch-${Math.floor(index / 1000) % 100}`;
    if (index % 200 === 0) paths.push(`scratch/${folder}/image-${index}.png`);
    else if (index % 200 === 1) paths.push(`${folder}/image-${index}.tmp`);
    else paths.push(`${folder}/image-${index}.png`);
  }
  return paths;
}

function writeLines(file: string, lines: Iterable<string>): void {
  const descriptor = openSync(file, 'wx');
  try {
    let pending: string[] = [];
    for (const line of lines) {
      pending.push(line, '\n');
      if (pending.length >= 20_000) {
        writeSync(descriptor, pending.join(''));
        pending = [];
      }
    }
    if (pending.length > 0) writeSync(descriptor, pending.join(''));
  } finally {
    closeSync(descriptor);
  }
}

function writeScenario(folder: string, name: string, paths: string[], shuffled: boolean): Scenario {
  const random = randomGenerator(42);
  const manifestOrder = [...paths];
  if (shuffled) shuffle(manifestOrder, random);
  else manifestOrder.sort(compareCodeUnits);

  const manifestPath = path.join(folder, `${name}-manifest.jsonl`);
  writeLines(manifestPath, (function* () {
    for (const itemPath of manifestOrder) yield JSON.stringify({ path: itemPath, size: 1000 + (itemPath.length % 97) });
  })());

  // Failed mini-batches: all items of mini-batches spread evenly through the manifest.
  const failedItems = new Set<number>();
  const failureLines: string[] = [];
  const stride = Math.floor(ITEMS / MINI_BATCH_SIZE / FAILED_MINI_BATCHES);
  for (let failed = 0; failed < FAILED_MINI_BATCHES; failed += 1) {
    const miniBatch = failed * stride + 3;
    for (let offset = 0; offset < MINI_BATCH_SIZE; offset += 1) {
      const item = miniBatch * MINI_BATCH_SIZE + offset;
      failedItems.add(item);
      const kind = failed % 3 === 0 ? 'timeout' : 'exception';
      failureLines.push(
        JSON.stringify({ path: manifestOrder[item], kind, errorType: kind === 'timeout' ? 'TimeoutError' : 'ValueError', message: 'bench failure', miniBatch }),
      );
    }
  }
  const failureRecordsPath = path.join(folder, `${name}-failures.jsonl`);
  writeLines(failureRecordsPath, failureLines);

  const rows: string[] = [];
  for (let item = 0; item < ITEMS; item += 1) {
    if (failedItems.has(item)) continue;
    const itemPath = manifestOrder[item];
    if (item % (ITEMS / ROW_ERRORS) === 7) {
      rows.push(JSON.stringify({ path: itemPath, label: null, confidence: null, error: 'OSError: cannot identify image file' }));
    } else {
      rows.push(JSON.stringify({ path: itemPath, label: item % 10, confidence: 0.5 + (item % 50) / 100 }));
    }
  }
  for (let duplicate = 0; duplicate < DUPLICATE_ROWS; duplicate += 1) rows.push(rows[duplicate * 97]);
  for (let unknown = 0; unknown < UNKNOWN_ROWS; unknown += 1) rows.push(JSON.stringify({ path: `not-in-manifest/${unknown}.png`, label: 1, confidence: 0.9 }));
  for (let unkeyed = 0; unkeyed < UNKEYED_ROWS; unkeyed += 1) rows.push(`image-${unkeyed}.png 7`);
  if (shuffled) {
    shuffle(rows, random);
  } else {
    // Mini-batch completion order: rows arrive in blocks of 100 that two processes finish out of order.
    for (let block = 0; block + 200 <= rows.length; block += 200) {
      for (let offset = 0; offset < 100; offset += 1) {
        [rows[block + offset], rows[block + 100 + offset]] = [rows[block + 100 + offset], rows[block + offset]];
      }
    }
  }
  const resultsPath = path.join(folder, `${name}-results.jsonl`);
  writeLines(resultsPath, rows);

  return { name, manifestPath, resultsPath, failureRecordsPath };
}

function runChild(scenario: Scenario, ledgerPath: string): ChildReport {
  const output = execFileSync(
    process.execPath,
    [__filename, '--child', scenario.manifestPath, scenario.resultsPath, scenario.failureRecordsPath, ledgerPath],
    { encoding: 'utf8', timeout: CHILD_TIMEOUT_MS, killSignal: 'SIGKILL', stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return JSON.parse(output) as ChildReport;
}

async function child(manifestPath: string, resultsPath: string, failureRecordsPath: string, ledgerPath: string): Promise<void> {
  const started = process.hrtime.bigint();
  const { counts } = await buildLedger({ manifestPath, resultsPath, failureRecords: [{ path: failureRecordsPath, round: 1 }], ledgerPath, exclude: EXCLUDE_PATTERNS });
  const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
  // maxRSS is in KiB on Linux.
  const maxRssMiB = process.resourceUsage().maxRSS / 1024;
  process.stdout.write(JSON.stringify({ elapsedMs, maxRssMiB, counts } satisfies ChildReport));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function main(): void {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-ledger-bench-'));
  try {
    const paths = itemPaths();
    const scenarios = [writeScenario(folder, 'local', paths, false), writeScenario(folder, 'azure', paths, true)];

    const rowsOut: string[] = [];
    for (const scenario of scenarios) {
      const reports: ChildReport[] = [];
      for (let repeat = 0; repeat < REPEATS; repeat += 1) {
        const ledgerPath = path.join(folder, `${scenario.name}-ledger-${repeat}.jsonl`);
        reports.push(runChild(scenario, ledgerPath));
        rmSync(ledgerPath);
      }
      const { counts } = reports[0];
      const inputMiB = (file: string): string => (readFileSync(file).length / (1 << 20)).toFixed(0);
      rowsOut.push(
        `| ${scenario.name} | ${counts.items.toLocaleString('en-US')} items, ${inputMiB(scenario.manifestPath)} MiB manifest, ` +
          `${counts.rows.toLocaleString('en-US')} rows (${inputMiB(scenario.resultsPath)} MiB) | ` +
          `${(median(reports.map((report) => report.elapsedMs)) / 1000).toFixed(2)} s ` +
          `(${reports.map((report) => (report.elapsedMs / 1000).toFixed(2)).join(', ')}) | ` +
          `${median(reports.map((report) => report.maxRssMiB)).toFixed(0)} MiB | ` +
          `${counts.scored} scored, ${counts.failed} failed, ${counts.excluded} excluded, ${counts.duplicateRows} duplicates, ` +
          `${counts.unknownRows} unknown, ${counts.unkeyedRows} unkeyed |`,
      );
    }

    console.log(`Machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node.js ${process.version}`);
    console.log('');
    console.log(`| Scenario | Input | Build time, median of ${REPEATS} (each run) | Peak RSS of the build process | Counts |`);
    console.log('| --- | --- | --- | --- | --- |');
    for (const row of rowsOut) console.log(row);
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}

function fail(error: unknown): never {
  console.error(error);
  process.exit(1);
}

const [mode, ...childArguments] = process.argv.slice(2);
if (mode === '--child') {
  child(childArguments[0], childArguments[1], childArguments[2], childArguments[3]).catch(fail);
} else {
  try {
    main();
  } catch (error) {
    fail(error);
  }
}
