/**
 * Failure records: which items a parallel job could not score, and why, as JSON Lines with one item per line:
 *
 *   {"path": "cats/01.png", "kind": "exception", "errorType": "ValueError", "message": "...", "miniBatch": 3, "attempts": 3}
 *
 * `path` is the item's relative path exactly as the manifest spells it, and `kind` is one of FAILURE_RECORD_KINDS.
 * The other fields are optional. One record per item keeps the ledger's merge a plain key lookup, whichever
 * backend wrote the records. `writeFailureRecordsFromJournal` writes them for a local job.
 */
import { createWriteStream } from 'node:fs';
import { finished } from 'node:stream/promises';
import type { JournalRecord } from '../backends/local/runner/result-store';
import { readLineBatches, requireAbsent } from './line-files';
import { readManifestEntry } from './manifest-lines';

/** Reason that every attempt of an item's mini-batch failed. */
export type RunnerFailureKind = 'exception' | 'timeout' | 'worker_exited' | 'missing_from_return' | 'invalid_return';

export const FAILURE_RECORD_KINDS: readonly RunnerFailureKind[] = [
  'exception',
  'timeout',
  'worker_exited',
  'missing_from_return',
  'invalid_return',
];

/** One line of a failure records file. */
export interface FailureRecord {
  path: string;
  kind: RunnerFailureKind;
  /** The exception's class name, such as `ValueError`, or the runner's name for the failure, such as `TimeoutError`. */
  errorType?: string;
  message?: string;
  /** 0-based index of the item's mini-batch. */
  miniBatch?: number;
  /** Attempts the mini-batch had, retries included. */
  attempts?: number;
}

/** Maximum message length kept in a failure record, because a mini-batch's message is repeated for each of its items. */
export const MAX_FAILURE_MESSAGE_CHARS = 1000;

/**
 * Maps an error type of the local runner's journal to a failure kind. The runner names its own failures
 * `TimeoutError` (run() exceeded runInvocationTimeout), `WorkerExited`, `RowCountMismatch` (run() returned more
 * or fewer elements than items) and `InvalidRunResult` (not a list, or a row that spans lines). Every other type
 * is an exception that run() raised.
 * NOTE: an entry script that raises Python's own TimeoutError is counted as a timeout too.
 */
export function failureKindOfErrorType(errorType: string | undefined): RunnerFailureKind {
  switch (errorType) {
    case 'TimeoutError':
      return 'timeout';
    case 'WorkerExited':
      return 'worker_exited';
    case 'RowCountMismatch':
      return 'missing_from_return';
    case 'InvalidRunResult':
      return 'invalid_return';
    default:
      return 'exception';
  }
}

/** Parses one failure record line, or throws an error that names the file, the line and the expected shape. */
export function parseFailureRecord(line: string, lineNumber: number, file: string): FailureRecord {
  const where = `failure records ${file} line ${lineNumber}`;
  const shape = `each line must be {"path": "<relative path>", "kind": "${FAILURE_RECORD_KINDS.join('" | "')}", "errorType"?, "message"?}`;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    throw new Error(`${where} is not valid JSON (${(error as Error).message}); ${shape}`, { cause: error });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${where} is not a JSON object; ${shape}`);

  const record = value as Record<string, unknown>;
  if (typeof record.path !== 'string' || record.path === '') throw new Error(`${where} has no valid "path"; ${shape}`);
  if (!FAILURE_RECORD_KINDS.includes(record.kind as RunnerFailureKind)) {
    throw new Error(`${where} has kind ${JSON.stringify(record.kind)}; ${shape}`);
  }
  for (const field of ['errorType', 'message'] as const) {
    if (record[field] !== undefined && typeof record[field] !== 'string') {
      throw new Error(`${where} has a non-string "${field}"; ${shape}`);
    }
  }
  for (const field of ['miniBatch', 'attempts'] as const) {
    if (record[field] !== undefined && !Number.isSafeInteger(record[field])) {
      throw new Error(`${where} has a non-integer "${field}"; ${shape}`);
    }
  }

  return {
    path: record.path,
    kind: record.kind as RunnerFailureKind,
    errorType: record.errorType as string | undefined,
    message: record.message as string | undefined,
    miniBatch: record.miniBatch as number | undefined,
    attempts: record.attempts as number | undefined,
  };
}

export interface JournalConversion {
  journalPath: string;
  /** The job's manifest, which the job split into mini-batches of `miniBatchSize` consecutive items. */
  manifestPath: string;
  miniBatchSize: number;
  /** File to create; it must not exist. */
  destination: string;
}

export interface JournalConversionResult {
  failedMiniBatches: number;
  /** Failure records written: the items of the failed mini-batches. */
  records: number;
}

/**
 * Writes one failure record per item of each mini-batch that the local runner's journal records as failed.
 * Memory contains the failed mini-batches' reasons but not the manifest, which is streamed.
 */
export async function writeFailureRecordsFromJournal(conversion: JournalConversion): Promise<JournalConversionResult> {
  const { journalPath, manifestPath, miniBatchSize, destination } = conversion;
  if (!Number.isSafeInteger(miniBatchSize) || miniBatchSize < 1) {
    throw new Error(`miniBatchSize ${miniBatchSize} is invalid; pass the job's miniBatchSize, a positive integer`);
  }
  await requireAbsent(destination, 'failure records file');

  const failed = await readFailedMiniBatches(journalPath);
  const out = createWriteStream(destination, { flags: 'wx' });
  let records = 0;
  try {
    let itemIndex = 0;
    for await (const batch of readLineBatches(manifestPath)) {
      let text = '';
      batch.lines.forEach((line, offset) => {
        if (line.trim() === '') return;
        const miniBatch = Math.floor(itemIndex / miniBatchSize);
        itemIndex += 1;
        const failure = failed.get(miniBatch);
        if (failure === undefined) return;
        const entry = readManifestEntry(line, batch.firstLineNumber + offset, manifestPath);
        text += `${JSON.stringify({ path: entry.path, ...failure } satisfies FailureRecord)}\n`;
        records += 1;
      });
      if (text !== '' && !out.write(text)) await new Promise<void>((resolve) => out.once('drain', resolve));
    }
  } finally {
    out.end();
    await finished(out);
  }
  return { failedMiniBatches: failed.size, records };
}

/**
 * Reads the failed mini-batches of a journal. Like the runner, it keeps the first line of a mini-batch that
 * appears twice, and ignores a last line that a crash cut short.
 */
async function readFailedMiniBatches(journalPath: string): Promise<Map<number, Omit<FailureRecord, 'path'>>> {
  const failed = new Map<number, Omit<FailureRecord, 'path'>>();
  const seen = new Set<number>();
  let invalidLine: number | undefined;

  for await (const batch of readLineBatches(journalPath)) {
    batch.lines.forEach((line, offset) => {
      if (line.trim() === '') return;
      const lineNumber = batch.firstLineNumber + offset;
      if (invalidLine !== undefined) {
        throw new Error(
          `journal ${journalPath} line ${invalidLine} is invalid but more lines follow it; the journal is corrupt, ` +
            'so run the job again before building failure records',
        );
      }
      const record = parseJournalLine(line);
      if (record === undefined) {
        invalidLine = lineNumber;
        return;
      }
      if (seen.has(record.miniBatch)) return;
      seen.add(record.miniBatch);
      if (record.outcome !== 'failed') return;

      const errorType = record.failure?.errorType;
      const message = record.failure?.message ?? 'the journal records no failure message';
      failed.set(record.miniBatch, {
        kind: failureKindOfErrorType(errorType),
        ...(errorType === undefined ? {} : { errorType }),
        message: message.length > MAX_FAILURE_MESSAGE_CHARS ? `${message.slice(0, MAX_FAILURE_MESSAGE_CHARS)}...` : message,
        miniBatch: record.miniBatch,
        attempts: record.attempts,
      });
    });
  }
  return failed;
}

function parseJournalLine(line: string): JournalRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const record = value as Partial<JournalRecord>;
  if (!Number.isSafeInteger(record.miniBatch) || (record.outcome !== 'succeeded' && record.outcome !== 'failed')) return undefined;
  return record as JournalRecord;
}
