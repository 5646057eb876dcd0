import { createReadStream, createWriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { readLedger } from '../activities/ledger/ledger-format';

export type ExportFormat = 'jsonl' | 'csv';

/** One row to export: its JSON Lines text, and its top-level fields when it is a JSON object. */
interface ExportRow {
  line: string;
  fields: Record<string, unknown> | undefined;
}

/** Opens a new pass over the rows. A CSV export makes a `columns` pass before the `rows` pass that writes them. */
type RowSource = (pass: 'columns' | 'rows') => AsyncIterable<ExportRow>;

/** Counts of one `exportLedgerRows` export. */
export interface LedgerExportCounts {
  rows: number;
  /** Failed items without a row, such as those of a mini-batch that failed every attempt. */
  itemsWithoutRow: number;
}

/**
 * Streams a JSON Lines results file as it is to `outputPath` (or standard output) as JSON Lines or CSV, and returns
 * the number of rows. The file contains every row each job appended, so an item scored again by a follow-up round or
 * a rescore has more than one. Lines that are not JSON objects are exported as they are in JSON Lines, and in a
 * single `row` column in CSV. An existing `outputPath` is kept unless `overwrite` is set.
 */
export async function exportRows(
  resultsFile: string,
  format: ExportFormat,
  outputPath: string | undefined,
  overwrite: boolean,
): Promise<number> {
  return writeRows(() => resultsFileRows(resultsFile), format, outputPath, overwrite);
}

/**
 * Streams the row that counts for each item of an item ledger, in the ledger's (manifest) order, to `outputPath`
 * (or standard output) as JSON Lines or CSV. That row is the one the ledger embeds: the first row without an error
 * for a scored item, or the row reporting an error in the latest round for a failed one. Excluded items and failed
 * items without a row, such as those of a mini-batch that failed every attempt, are left out, and the failed ones
 * are counted. An existing `outputPath` is kept unless `overwrite` is set.
 */
export async function exportLedgerRows(
  ledgerFile: string,
  format: ExportFormat,
  outputPath: string | undefined,
  overwrite: boolean,
): Promise<LedgerExportCounts> {
  let itemsWithoutRow = 0;
  async function* ledgerRows(pass: 'columns' | 'rows'): AsyncGenerator<ExportRow> {
    for await (const record of readLedger(ledgerFile)) {
      if (record.row !== undefined) yield { line: JSON.stringify(record.row), fields: record.row };
      else if (pass === 'rows' && record.state === 'failed') itemsWithoutRow += 1;
    }
  }

  const rows = await writeRows(ledgerRows, format, outputPath, overwrite);
  return { rows, itemsWithoutRow };
}

/**
 * Writes the rows as JSON Lines or CSV and returns their number. CSV columns are the union of the top-level keys of
 * all rows, in order of first appearance, so the source is read twice for CSV and no row is held in memory. Rows
 * that are not JSON objects go into a single `row` column.
 */
async function writeRows(source: RowSource, format: ExportFormat, outputPath: string | undefined, overwrite: boolean): Promise<number> {
  const columns = format === 'csv' ? await collectColumns(source) : [];
  const out = outputPath ? await openOutputFile(outputPath, overwrite) : process.stdout;
  const writer = new OutputWriter(out);
  try {
    if (format === 'csv') await writer.write(`${columns.map(csvField).join(',')}\n`);

    let count = 0;
    for await (const row of source('rows')) {
      count += 1;
      if (format === 'jsonl') {
        await writer.write(`${row.line}\n`);
        continue;
      }
      const fields = row.fields ?? { row: row.line };
      await writer.write(`${columns.map((column) => csvField(cellText(fields[column]))).join(',')}\n`);
    }

    if (outputPath) {
      out.end();
      await finished(out);
    }
    return count;
  } finally {
    writer.release();
    if (outputPath && !out.writableFinished) out.destroy();
  }
}

/** Opens `outputPath` for writing. Without `overwrite`, an existing file is kept and the error names the fix. */
async function openOutputFile(outputPath: string, overwrite: boolean): Promise<Writable> {
  const out = createWriteStream(outputPath, { flags: overwrite ? 'w' : 'wx' });
  await new Promise<void>((resolve, reject) => {
    const onOpen = (): void => {
      out.off('error', onError);
      resolve();
    };
    const onError = (error: NodeJS.ErrnoException): void => {
      out.off('open', onOpen);
      reject(error.code === 'EEXIST' ? new Error(`${outputPath} already exists; choose another --output or add --force`) : error);
    };
    out.once('open', onOpen);
    out.once('error', onError);
  });
  return out;
}

/**
 * Writes text to a stream, waiting for `drain` when its buffer is full, and rejects with the stream's error, such
 * as EPIPE when the reader of standard output has gone. Without this, a write error would go unhandled and the
 * wait for `drain` would never end.
 */
class OutputWriter {
  private failure: Error | undefined;
  private readonly onError = (error: Error): void => {
    this.failure ??= error;
  };

  constructor(private readonly out: Writable) {
    out.on('error', this.onError);
  }

  async write(text: string): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.out.write(text)) return;
    await new Promise<void>((resolve, reject) => {
      const settle = (error?: Error): void => {
        this.out.off('drain', onDrain);
        this.out.off('error', onFailure);
        this.out.off('close', onClose);
        if (error) reject(error);
        else resolve();
      };
      const onDrain = (): void => settle();
      const onFailure = (error: Error): void => settle(error);
      const onClose = (): void => settle(this.failure ?? new Error('the output closed before all rows were written'));
      this.out.on('drain', onDrain);
      this.out.on('error', onFailure);
      this.out.on('close', onClose);
    });
  }

  /** Removes the error listener, so a later error on a shared stream such as standard output is not hidden. */
  release(): void {
    this.out.off('error', this.onError);
  }
}

async function* resultsFileRows(resultsFile: string): AsyncGenerator<ExportRow> {
  for await (const line of createInterface({ input: createReadStream(resultsFile), crlfDelay: Infinity })) {
    if (line === '') continue;
    yield { line, fields: parseObject(line) };
  }
}

async function collectColumns(source: RowSource): Promise<string[]> {
  const columns = new Set<string>();
  for await (const row of source('columns')) {
    if (row.fields) for (const key of Object.keys(row.fields)) columns.add(key);
    else columns.add('row');
  }
  return [...columns];
}

function parseObject(line: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(line);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function cellText(value: unknown): string {
  if (value === undefined || value === null) return '';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** Quotes a CSV field when it holds a comma, quote, CR or LF, doubling inner quotes (RFC 4180). */
export function csvField(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
