/**
 * The rounds of a batch's results file. A batch's first job publishes its rows as the results file. Each follow-up
 * job scores only the items earlier rounds left failed, and appends its rows to the same file. The list of rounds,
 * `results-rounds.json` beside the results file, records where each round's rows begin and end, so:
 *   - collecting a job again (a retried activity) finds its round and changes nothing;
 *   - an append cut short by a crash is cut off again before the next attempt appends, because the file is first
 *     truncated to the length the list vouches for;
 *   - the item ledger distinguishes rows of different rounds, so a rescored item is not counted as a duplicate.
 */
import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { StageError } from '../../errors';
import type { ResultsRound } from '../../types';
import { pathExists, publishRows, readTextIfExists, rowReportsError, sha256OfFile } from './files';

export const RESULTS_ROUNDS_FILE = 'results-rounds.json';
/** Held while a job's rows are merged, so two batches never append to one results file at once. */
export const RESULTS_LOCK_FILE = 'results-rounds.lock';

interface RoundsDocument {
  /** File name of the results file in the folder; null with summary_only. */
  resultsFile: string | null;
  rounds: ResultsRound[];
}

/** A job's contribution to the results folder. */
export interface RoundContribution {
  jobName: string;
  /** The job's append_row output; absent with summary_only, or when a failed job wrote none. */
  rows?: Readable;
  failureRecordsFile?: string;
  noResultReason?: ResultsRound['noResultReason'];
}

export interface MergedResults {
  /** Every round so far, this job's last. */
  rounds: ResultsRound[];
  /** Totals over every round. */
  rowCount: number;
  failedRowCount: number;
  resultsSha256?: string;
}

/** Reads the rounds merged into `resultsFolder`, or returns an empty list when there are none. */
export async function readResultsRounds(resultsFolder: string): Promise<ResultsRound[]> {
  return (await readRoundsDocument(resultsFolder))?.rounds ?? [];
}

/**
 * Merges one job's rows into the results file `resultsFile` (absent with summary_only) and records its round.
 * The first round publishes through `publishRows`, which never overwrites another batch's file. Later rounds
 * append. A job already recorded returns the recorded rounds unchanged.
 */
export async function mergeRound(resultsFolder: string, resultsFile: string | undefined, job: RoundContribution): Promise<MergedResults> {
  const lock = await acquireMergeLock(resultsFolder, job.jobName);
  try {
    return await mergeRoundLocked(resultsFolder, resultsFile, job);
  } finally {
    await rm(lock, { force: true });
  }
}

/**
 * Takes the results folder's merge lock for `jobName`. A lock that the same job left behind is taken over, because
 * its collect crashed and is being retried. A lock of another job throws a retryable error, so this collect waits.
 */
async function acquireMergeLock(resultsFolder: string, jobName: string): Promise<string> {
  const lock = path.join(resultsFolder, RESULTS_LOCK_FILE);
  const owner = `${JSON.stringify({ jobName, pid: process.pid, host: os.hostname(), since: new Date().toISOString() })}\n`;
  try {
    await writeFile(lock, owner, { flag: 'wx' });
    return lock;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const text = (await readTextIfExists(lock)) ?? '';
  let holder: { jobName?: unknown; since?: unknown } = {};
  try {
    holder = JSON.parse(text) as typeof holder;
  } catch {
    // An unreadable lock has no known owner, and the error below reports it as unknown.
  }
  if (holder.jobName === jobName) {
    await writeFile(lock, owner);
    return lock;
  }
  throw new StageError(
    'Transient',
    `results folder ${resultsFolder} is being merged by job ${describeLockField(holder.jobName)} since ${describeLockField(holder.since)}; ` +
      `this collect tries again. If no batch is collecting into this folder, delete ${lock}`,
    { resultsFolder },
  );
}

function describeLockField(value: unknown): string {
  return typeof value === 'string' ? value : '(unknown)';
}

async function mergeRoundLocked(resultsFolder: string, resultsFile: string | undefined, job: RoundContribution): Promise<MergedResults> {
  const fileName = resultsFile === undefined ? null : path.basename(resultsFile);
  const document = (await readRoundsDocument(resultsFolder)) ?? { resultsFile: fileName, rounds: [] };
  if (document.resultsFile !== fileName) {
    throw new StageError(
      'Conflict',
      `results folder ${resultsFolder} holds results written to ${document.resultsFile ?? 'no results file'}, not ${fileName ?? 'no results file'}; ` +
        'rescore with the outputAction and appendRowFileName of the first batch, or choose another resultsFolder',
      { resultsFolder },
    );
  }

  const known = document.rounds.find((round) => round.jobName === job.jobName);
  if (known) {
    job.rows?.destroy();
    return totals(document.rounds, resultsFile);
  }

  const previous = document.rounds.at(-1);
  const round: ResultsRound = {
    round: (previous?.round ?? 0) + 1,
    jobName: job.jobName,
    firstLine: 1 + document.rounds.reduce((sum, each) => sum + each.rows, 0),
    rows: 0,
    failedRows: 0,
    endBytes: previous?.endBytes ?? 0,
    ...(job.failureRecordsFile !== undefined ? { failureRecordsFile: job.failureRecordsFile } : {}),
    ...(job.noResultReason !== undefined ? { noResultReason: job.noResultReason } : {}),
  };

  let counts: RoundCounts | undefined;
  if (resultsFile !== undefined) {
    counts = previous === undefined ? await publishFirstRound(resultsFile, job.rows) : await appendRound(resultsFile, previous.endBytes, job.rows);
    round.rows = counts.rows;
    round.failedRows = counts.failedRows;
    round.endBytes = counts.endBytes;
  } else {
    job.rows?.destroy();
  }

  document.rounds.push(round);
  await writeRoundsDocument(resultsFolder, document);
  return totals(document.rounds, resultsFile, counts?.sha256);
}

/** Rows a job added to the results file, and the file's SHA-256 when the merge computed it on the way. */
interface RoundCounts {
  rows: number;
  failedRows: number;
  endBytes: number;
  sha256?: string;
}

async function publishFirstRound(resultsFile: string, rows: Readable | undefined): Promise<RoundCounts> {
  if (rows === undefined) {
    // A job that failed before writing any row; an empty file keeps "the results file exists" true for later rounds.
    if (!(await pathExists(resultsFile))) await writeFile(resultsFile, '', { flag: 'wx' });
    else if ((await stat(resultsFile)).size > 0) {
      throw new StageError('Conflict', `results file ${resultsFile} already exists with other content; choose an empty resultsFolder or move the file`, {
        resultsFile,
      });
    }
    return { rows: 0, failedRows: 0, endBytes: 0 };
  }
  const draft = path.join(path.dirname(resultsFile), `.${path.basename(resultsFile)}.${randomUUID()}.tmp`);
  const counts = await publishRows(rows, resultsFile, draft);
  return { rows: counts.rows, failedRows: counts.failedRows, endBytes: (await stat(resultsFile)).size, sha256: counts.sha256 };
}

/**
 * Appends a later round's rows. The file is first cut back to the length the previous round left, which drops
 * the rows of an append that a crash cut short. The rows reach the disk before the round is recorded.
 */
async function appendRound(
  resultsFile: string,
  startBytes: number,
  rows: Readable | undefined,
): Promise<RoundCounts> {
  const size = (await stat(resultsFile)).size;
  if (size < startBytes) {
    throw new StageError(
      'Conflict',
      `results file ${resultsFile} is shorter (${size} bytes) than its recorded rounds (${startBytes} bytes), so rows were removed by hand; ` +
        `restore the file or choose another resultsFolder`,
      { resultsFile },
    );
  }
  if (size > startBytes) await truncate(resultsFile, startBytes);
  if (rows === undefined) return { rows: 0, failedRows: 0, endBytes: startBytes };

  const out = createWriteStream(resultsFile, { flags: 'a' });
  let count = 0;
  let failedRows = 0;
  try {
    for await (const line of createInterface({ input: rows, crlfDelay: Infinity })) {
      if (!out.write(`${line}\n`)) await new Promise<void>((resolve) => out.once('drain', resolve));
      count += 1;
      if (rowReportsError(line)) failedRows += 1;
    }
  } finally {
    out.end();
    await finished(out);
  }
  const handle = await open(resultsFile, 'r+');
  try {
    await handle.datasync();
  } finally {
    await handle.close();
  }
  return { rows: count, failedRows, endBytes: (await stat(resultsFile)).size };
}

/** Sums the rounds' rows. The results file is hashed only when the merge has not hashed it already. */
async function totals(rounds: ResultsRound[], resultsFile: string | undefined, knownSha256?: string): Promise<MergedResults> {
  return {
    rounds,
    rowCount: rounds.reduce((sum, round) => sum + round.rows, 0),
    failedRowCount: rounds.reduce((sum, round) => sum + round.failedRows, 0),
    ...(resultsFile !== undefined ? { resultsSha256: knownSha256 ?? (await sha256OfFile(resultsFile)) } : {}),
  };
}

async function readRoundsDocument(resultsFolder: string): Promise<RoundsDocument | undefined> {
  const file = path.join(resultsFolder, RESULTS_ROUNDS_FILE);
  const text = await readTextIfExists(file);
  if (text === undefined) return undefined;
  try {
    const document = JSON.parse(text) as RoundsDocument;
    if (!Array.isArray(document.rounds)) throw new TypeError('"rounds" is not an array');
    return document;
  } catch (error) {
    throw new StageError('InvalidInput', `${file} is not a valid list of result rounds (${(error as Error).message}); restore it or choose another resultsFolder`, {
      file,
    });
  }
}

async function writeRoundsDocument(resultsFolder: string, document: RoundsDocument): Promise<void> {
  const file = path.join(resultsFolder, RESULTS_ROUNDS_FILE);
  const draft = `${file}.${randomUUID()}.tmp`;
  try {
    await writeFile(draft, `${JSON.stringify(document, null, 2)}\n`);
    await rename(draft, file);
  } finally {
    await rm(draft, { force: true });
  }
}
