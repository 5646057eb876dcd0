import { closeSync, fdatasyncSync, ftruncateSync, openSync, statSync, truncateSync, writeSync } from 'node:fs';
import { LineReader } from './line-reader';
import type { JobPaths } from './job-files';
import { errorCode } from './job-files';

/** Why a mini-batch failed: the entry script's exception or the runner's reason. */
export interface MiniBatchFailure {
  message: string;
  errorType?: string;
  traceback?: string;
}

/** One line of journal.jsonl: a mini-batch that finished, successfully or after its last attempt failed. */
export interface JournalRecord {
  miniBatch: number;
  outcome: 'succeeded' | 'failed';
  /** Items in the mini-batch. */
  items: number;
  /** Rows appended to the output file; 0 for a failed mini-batch and under summary_only. */
  rows: number;
  attempts: number;
  /** Byte length of the output file after this mini-batch's rows were appended. */
  outputBytes: number;
  failure?: MiniBatchFailure;
  /**
   * True on the line of a second run that `faults.repeatMiniBatches` requested. Such a line always follows the
   * mini-batch's first line and changes no counts. Readers that keep the first line of each mini-batch ignore it.
   */
  repeat?: boolean;
}

/** The state rebuilt from the journal when a driver starts. */
export interface JournalReplay {
  finishedMiniBatches: Set<number>;
  /** The finished mini-batches whose last attempt failed. */
  failedMiniBatches: Set<number>;
  /** Mini-batches whose second run, requested by `faults.repeatMiniBatches`, has finished. */
  repeatedMiniBatches: Set<number>;
  miniBatchesSucceeded: number;
  miniBatchesFailed: number;
  itemsSucceeded: number;
  itemsFailed: number;
  /** The last mini-batch that failed, so a threshold error after a restart can still show its cause. */
  lastFailure?: { miniBatch: number; failure: MiniBatchFailure };
  /** Output length that the journal vouches for; the output file was truncated to it. */
  outputBytes: number;
  /** Bytes of output that a previous driver appended without journaling them, dropped by the truncation. */
  droppedOutputBytes: number;
}

/** Maximum traceback length kept in a journal line. A longer traceback keeps its end, where the raising line is. */
const MAX_JOURNAL_TRACEBACK_CHARS = 16_000;

/**
 * Appends mini-batch rows to the append_row output and records each finished mini-batch in the journal.
 *
 * Crash safety rests on one invariant: a journal line is written only after the output bytes that it covers are
 * on disk. Rows are appended at once, but journal lines wait in memory until `commit`, which first runs fdatasync
 * on the output and then appends the waiting lines. A driver killed before a commit loses only journal lines, so
 * the next driver truncates the output to the last journaled length and runs those mini-batches again. Committing
 * in groups keeps the fdatasync cost off each mini-batch.
 */
export class ResultStore {
  private pendingJournalLines: string[] = [];

  private constructor(
    private readonly journalFd: number,
    private readonly outputFd: number | undefined,
    private outputBytes: number,
  ) {}

  /**
   * Replays the journal, truncates the output file to the journaled length and opens both files for appending.
   * Throws when the journal is corrupt before its last line or the output is shorter than the journal records,
   * because the job's results can then no longer be trusted.
   */
  static async open(paths: JobPaths, outputFile: string | undefined): Promise<{ store: ResultStore; replay: JournalReplay }> {
    const replay = await replayJournal(paths.journal);

    let droppedOutputBytes = 0;
    if (outputFile !== undefined) {
      const size = fileSize(outputFile);
      if (size < replay.outputBytes) {
        throw new Error(
          `output file ${outputFile} has ${size} bytes but the journal ${paths.journal} records ${replay.outputBytes}; ` +
            'the output was changed outside the job driver, so delete the job folder and run the job again',
        );
      }
      droppedOutputBytes = size - replay.outputBytes;
      if (droppedOutputBytes > 0) truncateSync(outputFile, replay.outputBytes);
    }

    const journalFd = openSync(paths.journal, 'a');
    const outputFd = outputFile === undefined ? undefined : openSync(outputFile, 'a');
    const store = new ResultStore(journalFd, outputFd, replay.outputBytes);
    return { store, replay: { ...replay, droppedOutputBytes } };
  }

  /**
   * Appends the rows of a succeeded mini-batch and queues its journal line. `repeat` marks the second run that
   * `faults.repeatMiniBatches` requested.
   */
  recordSuccess(miniBatch: number, items: number, rows: readonly string[] | undefined, attempts: number, repeat = false): void {
    let rowCount = 0;
    if (rows !== undefined && this.outputFd !== undefined && rows.length > 0) {
      const bytes = Buffer.from(`${rows.join('\n')}\n`, 'utf8');
      writeFully(this.outputFd, bytes);
      this.outputBytes += bytes.length;
      rowCount = rows.length;
    }
    this.queue({ miniBatch, outcome: 'succeeded', items, rows: rowCount, attempts, outputBytes: this.outputBytes, ...repeatField(repeat) });
  }

  /**
   * Queues the journal line of a mini-batch whose last attempt failed; its rows are never appended. `repeat` marks
   * the second run that `faults.repeatMiniBatches` requested.
   */
  recordFailure(miniBatch: number, items: number, failure: MiniBatchFailure, attempts: number, repeat = false): void {
    const traceback =
      failure.traceback !== undefined && failure.traceback.length > MAX_JOURNAL_TRACEBACK_CHARS
        ? `...\n${failure.traceback.slice(-MAX_JOURNAL_TRACEBACK_CHARS)}`
        : failure.traceback;
    this.queue({
      miniBatch,
      outcome: 'failed',
      items,
      rows: 0,
      attempts,
      outputBytes: this.outputBytes,
      failure: { ...failure, traceback },
      ...repeatField(repeat),
    });
  }

  /** Makes the appended rows durable, then writes the journal lines that cover them. */
  commit(): void {
    if (this.pendingJournalLines.length === 0) return;
    if (this.outputFd !== undefined) fdatasyncSync(this.outputFd);
    const lines = this.pendingJournalLines.join('');
    this.pendingJournalLines = [];
    writeFully(this.journalFd, Buffer.from(lines, 'utf8'));
  }

  close(): void {
    this.commit();
    fdatasyncSync(this.journalFd);
    closeSync(this.journalFd);
    if (this.outputFd !== undefined) closeSync(this.outputFd);
  }

  private queue(record: JournalRecord): void {
    this.pendingJournalLines.push(`${JSON.stringify(record)}\n`);
  }
}

/** Returns the `repeat` field of a journal line; first runs leave it out, so their lines keep their old shape. */
function repeatField(repeat: boolean): Pick<JournalRecord, 'repeat'> {
  return repeat ? { repeat: true } : {};
}

function writeFully(fd: number, bytes: Buffer): void {
  let written = 0;
  while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
}

function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return 0;
    throw error;
  }
}

function isJournalRecord(value: unknown): value is JournalRecord {
  if (typeof value !== 'object' || value === null) return false;
  const record = value as Partial<JournalRecord>;
  return (
    Number.isSafeInteger(record.miniBatch) &&
    (record.outcome === 'succeeded' || record.outcome === 'failed') &&
    Number.isSafeInteger(record.items) &&
    Number.isSafeInteger(record.outputBytes) &&
    (record.repeat === undefined || typeof record.repeat === 'boolean')
  );
}

/**
 * Reads journal.jsonl. A crash during an append can cut the last line short. Such a line is dropped and the file
 * truncated after the last complete line, so the next append starts on a fresh line.
 */
async function replayJournal(journalPath: string): Promise<Omit<JournalReplay, 'droppedOutputBytes'>> {
  const replay: Omit<JournalReplay, 'droppedOutputBytes'> = {
    finishedMiniBatches: new Set<number>(),
    failedMiniBatches: new Set<number>(),
    repeatedMiniBatches: new Set<number>(),
    miniBatchesSucceeded: 0,
    miniBatchesFailed: 0,
    itemsSucceeded: 0,
    itemsFailed: 0,
    outputBytes: 0,
  };

  let reader: LineReader;
  try {
    reader = await LineReader.open(journalPath);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return replay;
    throw error;
  }

  let validBytes = 0;
  let invalidLine: number | undefined;
  try {
    for (let line = await reader.nextLine(); line !== undefined; line = await reader.nextLine()) {
      if (invalidLine !== undefined) {
        throw new Error(
          `journal ${journalPath} line ${invalidLine} is invalid but more lines follow it; the journal is corrupt, ` +
            'so delete the job folder and run the job again',
        );
      }
      const record = parseRecord(line);
      if (record === undefined || !reader.lastLineTerminated) {
        invalidLine = reader.lineNumber;
        continue;
      }
      validBytes = reader.endOffset;
      applyRecord(replay, record);
    }
  } finally {
    await reader.close();
  }

  if (invalidLine !== undefined) truncateJournal(journalPath, validBytes);
  return replay;
}

function parseRecord(line: string): JournalRecord | undefined {
  try {
    const value: unknown = JSON.parse(line);
    return isJournalRecord(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function applyRecord(replay: Omit<JournalReplay, 'droppedOutputBytes'>, record: JournalRecord): void {
  if (record.repeat === true) {
    replay.repeatedMiniBatches.add(record.miniBatch);
    replay.outputBytes = record.outputBytes;
    return;
  }
  if (replay.finishedMiniBatches.has(record.miniBatch)) return;
  replay.finishedMiniBatches.add(record.miniBatch);
  replay.outputBytes = record.outputBytes;
  if (record.outcome === 'succeeded') {
    replay.miniBatchesSucceeded += 1;
    replay.itemsSucceeded += record.items;
  } else {
    replay.miniBatchesFailed += 1;
    replay.failedMiniBatches.add(record.miniBatch);
    replay.itemsFailed += record.items;
    replay.lastFailure = { miniBatch: record.miniBatch, failure: record.failure ?? { message: 'no failure recorded' } };
  }
}

function truncateJournal(journalPath: string, length: number): void {
  const fd = openSync(journalPath, 'r+');
  try {
    ftruncateSync(fd, length);
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
