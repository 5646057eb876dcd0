/**
 * The item ledger: one JSON line per manifest item, in manifest order, saying whether the item was scored, failed
 * or excluded, and why:
 *
 *   {"path":"cats/01.png","state":"scored","row":{"path":"cats/01.png","label":3,"confidence":0.98}}
 *   {"path":"cats/02.png","state":"failed","reason":{"kind":"row_error","errorType":"OSError","message":"..."},"row":{...}}
 *   {"path":"cats/03.png","state":"failed","reason":{"kind":"timeout","errorType":"TimeoutError","message":"...","miniBatch":0}}
 *   {"path":"scratch/notes.txt","state":"excluded","reason":{"kind":"exclude_pattern","pattern":"scratch/**"}}
 *
 * The item's row is embedded, not referenced by a byte offset into the results file. The ledger then answers every
 * per-item question (report, export, rescoring the failures) in one sequential read, and stays valid when the
 * results file is moved or collected again. The cost is a ledger about as large as the results file. A `row` is present
 * for scored items and for items whose row reports an error, and absent otherwise.
 */
import type { RunnerFailureKind } from './failure-records';
import { readLineBatches } from './line-files';

export type LedgerState = 'scored' | 'failed' | 'excluded';

/**
 * Kind of an item's failure: a kind from the runner's failure records, `row_error` or `no_result`. `row_error`
 * means the item's row has a non-null `error` field, such as for an unreadable image. `no_result` means the item
 * has no row and no failure record, because the entry script's return left it out or the job did not finish it. Its
 * reason may carry the job's own failure, such as an exceeded error threshold read from the job's logs.
 */
export type FailureKind = RunnerFailureKind | 'row_error' | 'no_result';

export const FAILURE_KINDS: readonly FailureKind[] = [
  'exception',
  'timeout',
  'worker_exited',
  'missing_from_return',
  'invalid_return',
  'row_error',
  'no_result',
];

/** Why an item is excluded: an exclude pattern matched it, or include patterns were given and none matched it. */
export type ExclusionKind = 'exclude_pattern' | 'no_include_pattern';

export interface LedgerReason {
  kind: FailureKind | ExclusionKind;
  /** Exception class name, such as `ValueError`, or the runner's name for the failure, such as `TimeoutError`. */
  errorType?: string;
  message?: string;
  /** The exclude pattern that matched, for `exclude_pattern`. */
  pattern?: string;
  /** 0-based index of the item's mini-batch, when the failure records give it. */
  miniBatch?: number;
  attempts?: number;
}

/** One ledger line. */
export interface LedgerRecord {
  path: string;
  state: LedgerState;
  /** Set for failed and excluded items. */
  reason?: LedgerReason;
  /** The item's row from the results file, for scored items and rows that report an error. */
  row?: Record<string, unknown>;
}

/** Returns the key under which `LedgerCounts.failedByReason` counts a failure, such as `exception ValueError`. */
export function failureReasonLabel(reason: Pick<LedgerReason, 'kind' | 'errorType'>): string {
  return reason.errorType === undefined || reason.errorType === '' ? reason.kind : `${reason.kind} ${reason.errorType}`;
}

/** Yields the records of a ledger file one at a time, streaming. Throws an error naming the line when one is invalid. */
export async function* readLedger(ledgerPath: string): AsyncGenerator<LedgerRecord> {
  for await (const batch of readLineBatches(ledgerPath)) {
    for (let offset = 0; offset < batch.lines.length; offset += 1) {
      const line = batch.lines[offset];
      if (line === '') continue;
      yield parseLedgerLine(line, batch.firstLineNumber + offset, ledgerPath);
    }
  }
}

/** Parses one non-empty ledger line, or throws an error that names the ledger and the line number. */
export function parseLedgerLine(line: string, lineNumber: number, ledgerPath: string): LedgerRecord {
  let record: LedgerRecord;
  try {
    record = JSON.parse(line) as LedgerRecord;
  } catch (error) {
    throw new Error(`ledger ${ledgerPath} line ${lineNumber} is not valid JSON; build the ledger again`, { cause: error });
  }
  if (typeof record !== 'object' || record === null || typeof record.path !== 'string' || !['scored', 'failed', 'excluded'].includes(record.state)) {
    throw new Error(`ledger ${ledgerPath} line ${lineNumber} is not a ledger record ({"path", "state", ...}); build the ledger again`);
  }
  return record;
}
