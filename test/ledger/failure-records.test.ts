import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { JournalRecord } from '../../activities/backends/local/runner/result-store';
import {
  MAX_FAILURE_MESSAGE_CHARS,
  failureKindOfErrorType,
  parseFailureRecord,
  writeFailureRecordsFromJournal,
} from '../../activities/ledger/failure-records';

let folder: string;

beforeEach(() => {
  folder = mkdtempSync(path.join(os.tmpdir(), 'failure-records-test-'));
});

afterEach(() => {
  rmSync(folder, { recursive: true, force: true });
});

function write(name: string, text: string): string {
  const file = path.join(folder, name);
  writeFileSync(file, text);
  return file;
}

function journalLine(record: JournalRecord): string {
  return `${JSON.stringify(record)}\n`;
}

function manifestOf(count: number): string {
  const lines = Array.from({ length: count }, (_, index) => `${JSON.stringify({ path: `item-${index}.png`, size: 1 })}\n`);
  // A blank line carries no item; the runner skips it when it forms mini-batches.
  lines.splice(3, 0, '\n');
  return write('manifest.jsonl', lines.join(''));
}

function readRecords(file: string): Record<string, unknown>[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('failure records from the journal', () => {
  test('items of failed mini-batches get records', async () => {
    const journalPath = write(
      'journal.jsonl',
      journalLine({ miniBatch: 1, outcome: 'failed', items: 2, rows: 0, attempts: 3, outputBytes: 0, failure: { message: 'run() did not return', errorType: 'TimeoutError' } }) +
        journalLine({ miniBatch: 0, outcome: 'succeeded', items: 2, rows: 2, attempts: 1, outputBytes: 20 }) +
        journalLine({ miniBatch: 2, outcome: 'failed', items: 1, rows: 0, attempts: 3, outputBytes: 20, failure: { message: 'bad pixel', errorType: 'ValueError', traceback: 'Traceback...' } }) +
        // A later line for a finished mini-batch is ignored, as the runner's journal replay does.
        journalLine({ miniBatch: 1, outcome: 'succeeded', items: 2, rows: 2, attempts: 4, outputBytes: 40 }),
    );
    const destination = path.join(folder, 'failures.jsonl');

    const result = await writeFailureRecordsFromJournal({ journalPath, manifestPath: manifestOf(5), miniBatchSize: 2, destination });

    expect(result).toEqual({ failedMiniBatches: 2, records: 3 });
    expect(readRecords(destination)).toEqual([
      { path: 'item-2.png', kind: 'timeout', errorType: 'TimeoutError', message: 'run() did not return', miniBatch: 1, attempts: 3 },
      { path: 'item-3.png', kind: 'timeout', errorType: 'TimeoutError', message: 'run() did not return', miniBatch: 1, attempts: 3 },
      { path: 'item-4.png', kind: 'exception', errorType: 'ValueError', message: 'bad pixel', miniBatch: 2, attempts: 3 },
    ]);
  });

  test('long messages are truncated', async () => {
    const message = 'x'.repeat(MAX_FAILURE_MESSAGE_CHARS + 50);
    const journalPath = write('journal.jsonl', journalLine({ miniBatch: 0, outcome: 'failed', items: 1, rows: 0, attempts: 1, outputBytes: 0, failure: { message } }));
    const destination = path.join(folder, 'failures.jsonl');

    await writeFailureRecordsFromJournal({ journalPath, manifestPath: manifestOf(1), miniBatchSize: 1, destination });

    const [record] = readRecords(destination);
    expect(record.message).toBe(`${'x'.repeat(MAX_FAILURE_MESSAGE_CHARS)}...`);
    expect(record.kind).toBe('exception');
  });

  test('cut last journal line is ignored', async () => {
    const journalPath = write(
      'journal.jsonl',
      journalLine({ miniBatch: 0, outcome: 'failed', items: 1, rows: 0, attempts: 1, outputBytes: 0, failure: { message: 'boom', errorType: 'RuntimeError' } }) +
        '{"miniBatch": 1, "outco',
    );
    const destination = path.join(folder, 'failures.jsonl');

    const result = await writeFailureRecordsFromJournal({ journalPath, manifestPath: manifestOf(2), miniBatchSize: 1, destination });

    expect(result.records).toBe(1);
  });

  test('corrupt journal middle line is rejected', async () => {
    const journalPath = write('journal.jsonl', 'garbage\n' + journalLine({ miniBatch: 0, outcome: 'succeeded', items: 1, rows: 1, attempts: 1, outputBytes: 5 }));

    await expect(
      writeFailureRecordsFromJournal({ journalPath, manifestPath: manifestOf(1), miniBatchSize: 1, destination: path.join(folder, 'f.jsonl') }),
    ).rejects.toThrow(/journal .* line 1 is invalid but more lines follow it/);
  });

  test('invalid mini-batch size is rejected', async () => {
    const journalPath = write('journal.jsonl', '');

    await expect(
      writeFailureRecordsFromJournal({ journalPath, manifestPath: manifestOf(1), miniBatchSize: 0, destination: path.join(folder, 'f.jsonl') }),
    ).rejects.toThrow(/miniBatchSize 0 is invalid; pass the job's miniBatchSize/);
  });

  test.each([
    ['TimeoutError', 'timeout'],
    ['WorkerExited', 'worker_exited'],
    ['RowCountMismatch', 'missing_from_return'],
    ['InvalidRunResult', 'invalid_return'],
    ['ValueError', 'exception'],
    [undefined, 'exception'],
  ])('error type %s maps to %s', (errorType, kind) => {
    expect(failureKindOfErrorType(errorType)).toBe(kind);
  });
});

describe('parseFailureRecord', () => {
  test('valid record parses', () => {
    expect(parseFailureRecord('{"path": "a", "kind": "timeout", "miniBatch": 4}', 1, 'f')).toEqual({
      path: 'a',
      kind: 'timeout',
      errorType: undefined,
      message: undefined,
      miniBatch: 4,
      attempts: undefined,
    });
  });

  test.each([
    ['not json', /f line 3 is not valid JSON/],
    ['[1]', /f line 3 is not a JSON object/],
    ['{"kind": "timeout"}', /f line 3 has no valid "path"/],
    ['{"path": "a", "kind": "oom"}', /f line 3 has kind "oom"/],
    ['{"path": "a", "kind": "timeout", "message": 5}', /non-string "message"/],
    ['{"path": "a", "kind": "timeout", "miniBatch": 1.5}', /non-integer "miniBatch"/],
  ])('record %s is rejected', (line, message) => {
    expect(() => parseFailureRecord(line, 3, 'f')).toThrow(message);
  });
});
