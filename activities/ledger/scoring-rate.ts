/**
 * Scoring rates measured on completed jobs, for the file-size check of later batches. A folder that the worker owns
 * contains one JSON file with the last measurement per entry script: per backend, code directory and entry script.
 *
 * A rate is input bytes per second per process, estimated as the job's total input bytes divided by its run time
 * and by the number of processes that ran mini-batches. The run time includes process start, init() and idle time
 * at the end, so the estimate is a lower bound of what one run() call reads per second.
 *
 * NOTE: only local jobs are measured (`recordLocalJobScoringRate`). The Azure ML job resource has no start or end
 * time (`JobBaseProperties` of @azure/arm-machinelearning 2.1.1), so Azure batches skip the file-size check.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Backend } from '../../workflows/input';
import type { LocalJobSpec } from '../backends/local/runner/job-spec';
import { readLocalJobStatus } from '../backends/local/runner/local-job';
import { readTextIfExists } from '../backends/common/files';
import { readLineBatches } from './line-files';
import { readManifestEntry } from './manifest-lines';

/** Name of the rates file inside the folder passed to `readScoringRate` and `recordScoringRate`. */
export const SCORING_RATES_FILE = 'scoring-rates.json';

/** The entry script a rate belongs to. */
export interface ScoringRateKey {
  backend: Backend;
  /** Absolute folder that contains the entry script. */
  codeDirectory: string;
  /** Entry script path relative to `codeDirectory`. */
  entryScript: string;
}

/** One job's measured rate and the figures it was computed from. */
export interface ScoringRateMeasurement {
  /** Input bytes per second per process; a lower bound, see the file comment. */
  bytesPerSecond: number;
  jobName: string;
  totalBytes: number;
  /** Seconds from the job's start to its end. */
  runSeconds: number;
  /** Processes that ran mini-batches: the job's process count, at most its mini-batch count. */
  processes: number;
  /** ISO 8601 time the job ended. */
  measuredAt: string;
}

/** Figures of a completed job, as its backend records them. */
export interface CompletedJobFigures {
  jobName: string;
  /** Input bytes of the items the job scored. */
  totalBytes: number;
  /** ISO 8601 times. */
  startedAt: string;
  endedAt: string;
  processCount: number;
  miniBatches: number;
}

type ScoringRateEntry = ScoringRateKey & ScoringRateMeasurement;

interface ScoringRatesFile {
  rates: ScoringRateEntry[];
}

/** Thrown by `readScoringRate` when the rates file exists but is not a rates file. */
export class InvalidScoringRatesFileError extends Error {
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super(`scoring rates file ${file} is invalid (${reason}); delete it, and the next completed job writes a new one`);
    this.name = 'InvalidScoringRatesFileError';
  }
}

/**
 * Computes a job's rate, or returns undefined when its figures allow none: no input bytes, no mini-batch, or
 * missing, unparsable or non-increasing times.
 */
export function measureScoringRate(job: CompletedJobFigures): ScoringRateMeasurement | undefined {
  const runMs = Date.parse(job.endedAt) - Date.parse(job.startedAt);
  const processes = Math.min(job.processCount, job.miniBatches);
  if (!(runMs > 0) || !(job.totalBytes > 0) || !(processes >= 1)) return undefined;

  const runSeconds = runMs / 1000;
  return {
    bytesPerSecond: job.totalBytes / (runSeconds * processes),
    jobName: job.jobName,
    totalBytes: job.totalBytes,
    runSeconds,
    processes,
    measuredAt: job.endedAt,
  };
}

/**
 * Returns the last rate measured for `key` in `folder`, or undefined when none was. Throws
 * `InvalidScoringRatesFileError` when the file cannot be parsed.
 */
export async function readScoringRate(folder: string, key: ScoringRateKey): Promise<ScoringRateMeasurement | undefined> {
  const rates = await readRatesFile(path.join(folder, SCORING_RATES_FILE));
  const entry = rates?.rates.find((candidate) => sameKey(candidate, key));
  if (entry === undefined) return undefined;

  const { bytesPerSecond, jobName, totalBytes, runSeconds, processes, measuredAt } = entry;
  return { bytesPerSecond, jobName, totalBytes, runSeconds, processes, measuredAt };
}

/**
 * Stores `measurement` as the rate of `key` in `folder`, replacing an older one. The file is replaced atomically
 * (written beside it, then renamed), so a reader sees the old or the new file, never a part of one. An invalid
 * file is replaced by one that contains only this rate.
 * NOTE: two workers that record at the same moment can lose one of the two measurements; the next job adds it back.
 */
export async function recordScoringRate(folder: string, key: ScoringRateKey, measurement: ScoringRateMeasurement): Promise<void> {
  const file = path.join(folder, SCORING_RATES_FILE);
  let existing: ScoringRatesFile | undefined;
  try {
    existing = await readRatesFile(file);
  } catch (error) {
    if (!(error instanceof InvalidScoringRatesFileError)) throw error;
  }

  const entry: ScoringRateEntry = { ...key, ...measurement };
  const rates = [...(existing?.rates ?? []).filter((candidate) => !sameKey(candidate, key)), entry];
  await mkdir(folder, { recursive: true });
  const draft = path.join(folder, `.${SCORING_RATES_FILE}.${randomUUID()}.tmp`);
  try {
    await writeFile(draft, `${JSON.stringify({ rates } satisfies ScoringRatesFile, null, 2)}\n`);
    await rename(draft, file);
  } finally {
    await rm(draft, { force: true });
  }
}

/**
 * Measures a completed local job from its job folder and records the rate in `workspaceDir`. Returns the
 * measurement, or undefined when the job has not completed or its figures allow no rate.
 * NOTE: a job whose driver was restarted after a crash keeps its first start time, so the time the driver was
 * down counts as run time and the rate comes out too low until the next completed job replaces it.
 */
export async function recordLocalJobScoringRate(workspaceDir: string, jobFolder: string): Promise<ScoringRateMeasurement | undefined> {
  const status = await readLocalJobStatus(jobFolder);
  if (status.state !== 'Completed' || status.startedAt === undefined || status.endedAt === undefined) return undefined;

  const spec = JSON.parse(await readFile(path.join(jobFolder, 'job.json'), 'utf8')) as LocalJobSpec;
  const measurement = measureScoringRate({
    jobName: spec.jobName,
    totalBytes: await sumManifestBytes(spec.manifestPath),
    startedAt: status.startedAt,
    endedAt: status.endedAt,
    processCount: spec.processCount,
    miniBatches: status.progress.miniBatchesTotal,
  });
  if (measurement === undefined) return undefined;

  await recordScoringRate(workspaceDir, { backend: 'local', codeDirectory: spec.codeDirectory, entryScript: spec.entryScript }, measurement);
  return measurement;
}

/** Returns the sum of the sizes in a manifest, streaming it. */
async function sumManifestBytes(manifestPath: string): Promise<number> {
  let total = 0;
  for await (const batch of readLineBatches(manifestPath)) {
    for (let offset = 0; offset < batch.lines.length; offset += 1) {
      const line = batch.lines[offset];
      if (line.trim() === '') continue;
      total += readManifestEntry(line, batch.firstLineNumber + offset, manifestPath).size;
    }
  }
  return total;
}

async function readRatesFile(file: string): Promise<ScoringRatesFile | undefined> {
  const text = await readTextIfExists(file);
  if (text === undefined) return undefined;

  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new InvalidScoringRatesFileError(file, (error as Error).message);
  }
  const rates = (value as { rates?: unknown } | null)?.rates;
  if (!Array.isArray(rates) || !rates.every(isRateEntry)) {
    throw new InvalidScoringRatesFileError(file, 'expected {"rates": [...]} with the key and measurement fields in each entry');
  }
  return { rates };
}

function isRateEntry(value: unknown): value is ScoringRateEntry {
  if (typeof value !== 'object' || value === null) return false;
  const entry = value as Partial<ScoringRateEntry>;
  return (
    typeof entry.backend === 'string' &&
    typeof entry.codeDirectory === 'string' &&
    typeof entry.entryScript === 'string' &&
    typeof entry.jobName === 'string' &&
    typeof entry.measuredAt === 'string' &&
    isPositive(entry.bytesPerSecond) &&
    isPositive(entry.totalBytes) &&
    isPositive(entry.runSeconds) &&
    isPositive(entry.processes)
  );
}

function isPositive(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0;
}

function sameKey(a: ScoringRateKey, b: ScoringRateKey): boolean {
  return a.backend === b.backend && a.codeDirectory === b.codeDirectory && a.entryScript === b.entryScript;
}
