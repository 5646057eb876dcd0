import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { finished } from 'node:stream/promises';

export type ExportFormat = 'jsonl' | 'csv';

/**
 * Streams a JSON Lines results file to `outputPath` (or standard output) as JSON Lines or CSV, and returns the
 * number of rows. CSV columns are the union of the top-level keys of all rows, in order of first appearance, so the
 * file is read twice for CSV. Rows that are not JSON objects are exported in a single `row` column. An existing
 * `outputPath` is kept unless `overwrite` is set.
 */
export async function exportRows(
  resultsFile: string,
  format: ExportFormat,
  outputPath: string | undefined,
  overwrite: boolean,
): Promise<number> {
  const columns = format === 'csv' ? await collectColumns(resultsFile) : [];
  const out: NodeJS.WritableStream = outputPath
    ? createWriteStream(outputPath, { flags: overwrite ? 'w' : 'wx' })
    : process.stdout;
  if (outputPath) {
    await new Promise<void>((resolve, reject) => {
      (out as WriteStream).once('open', () => resolve());
      (out as WriteStream).once('error', (error: NodeJS.ErrnoException) =>
        reject(
          error.code === 'EEXIST' ? new Error(`${outputPath} already exists; choose another --output or add --force`) : error,
        ),
      );
    });
  }

  const write = async (text: string): Promise<void> => {
    if (!out.write(text)) await new Promise<void>((resolve) => out.once('drain', resolve));
  };
  if (format === 'csv') await write(`${columns.map(csvField).join(',')}\n`);

  let count = 0;
  for await (const line of readLines(resultsFile)) {
    if (line === '') continue;
    count += 1;
    if (format === 'jsonl') {
      await write(`${line}\n`);
      continue;
    }
    const row = parseObject(line) ?? { row: line };
    await write(`${columns.map((column) => csvField(cellText(row[column]))).join(',')}\n`);
  }

  if (outputPath) {
    (out as WriteStream).end();
    await finished(out);
  }
  return count;
}

async function collectColumns(resultsFile: string): Promise<string[]> {
  const columns = new Set<string>();
  for await (const line of readLines(resultsFile)) {
    if (line === '') continue;
    const row = parseObject(line);
    if (row) for (const key of Object.keys(row)) columns.add(key);
    else columns.add('row');
  }
  return [...columns];
}

function readLines(file: string): AsyncIterable<string> {
  return createInterface({ input: createReadStream(file), crlfDelay: Infinity });
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
