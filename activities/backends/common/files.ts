import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { access, readFile, rename, rm } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { StageError } from '../../errors';

export async function pathExists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}

/** Reads a UTF-8 file; undefined when it does not exist. Other read errors are thrown. */
export async function readTextIfExists(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

export async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export interface RowCounts {
  rows: number;
  /** Rows whose JSON object has a non-null `error` field. */
  failedRows: number;
  /** SHA-256 of the written file, hex. */
  sha256: string;
}

/**
 * Copies append_row output line by line from `source` into a new file `destination` (which must not exist),
 * counting rows and rows that report an error, so results of any size stream through without being held in memory.
 */
export async function copyAndCountRows(source: Readable, destination: string): Promise<RowCounts> {
  const out = createWriteStream(destination, { flags: 'wx' });
  const hash = createHash('sha256');
  let rows = 0;
  let failedRows = 0;
  try {
    for await (const line of createInterface({ input: source, crlfDelay: Infinity })) {
      const text = `${line}\n`;
      hash.update(text);
      if (!out.write(text)) await new Promise<void>((resolve) => out.once('drain', resolve));
      rows += 1;
      if (rowReportsError(line)) failedRows += 1;
    }
  } finally {
    out.end();
    await finished(out);
  }
  return { rows, failedRows, sha256: hash.digest('hex') };
}

/**
 * Streams append_row output from `source` into `destination` through the draft file `draft`, counting rows. An
 * existing destination is never overwritten: with the same content (a retried collect) it is reused, and with other
 * content, which belongs to someone else, the collect fails with a conflict. The draft is removed either way.
 */
export async function publishRows(source: Readable, destination: string, draft: string): Promise<RowCounts> {
  try {
    const counts = await copyAndCountRows(source, draft);
    if (!(await pathExists(destination))) {
      await rename(draft, destination);
      return counts;
    }
    if ((await sha256OfFile(destination)) !== counts.sha256) {
      throw new StageError(
        'Conflict',
        `results file ${destination} already exists with other content; choose an empty resultsFolder or move the file`,
        { resultsFile: destination },
      );
    }
    return counts;
  } finally {
    await rm(draft, { force: true });
  }
}

/** True when `line` is a JSON object whose `error` field is set and not null. */
export function rowReportsError(line: string): boolean {
  if (!line.startsWith('{')) return false;
  try {
    const row = JSON.parse(line) as { error?: unknown };
    return row.error !== undefined && row.error !== null;
  } catch {
    return false;
  }
}

/** Waits `ms` milliseconds; rejects with the signal's reason as soon as `signal` is aborted. */
export function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Compares two strings by UTF-16 code units, the same on every machine and locale, for stable sort orders. */
export function compareCodeUnits(a: string, b: string): number {
  if (a < b) return -1;
  if (a > b) return 1;
  return 0;
}
