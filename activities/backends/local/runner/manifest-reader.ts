import path from 'node:path';
import { LineReader } from './line-reader';

/** A group of consecutive manifest items that one `run()` call receives. */
export interface MiniBatch {
  /** 0-based index. Mini-batch k contains items [k * miniBatchSize, (k + 1) * miniBatchSize) of the manifest. */
  index: number;
  /** Absolute paths: the manifest's relative paths resolved against the input root. */
  items: string[];
}

/**
 * Returns the relative path of one manifest line, or throws an error naming the manifest, the line number and the
 * fix. Paths must stay inside the input root, because the entry script must not read files outside the dataset.
 */
function parseManifestLine(line: string, lineNumber: number, manifestPath: string): string {
  const where = `manifest ${manifestPath} line ${lineNumber}`;
  let entry: unknown;
  try {
    entry = JSON.parse(line);
  } catch (error) {
    throw new Error(`${where} is not valid JSON (${(error as Error).message}); each line must be {"path": "<relative path>", "size": <bytes>}`, {
      cause: error,
    });
  }
  const relativePath = typeof entry === 'object' && entry !== null ? (entry as { path?: unknown }).path : undefined;
  if (typeof relativePath !== 'string' || relativePath === '' || relativePath.includes('\0')) {
    throw new Error(`${where} has no valid "path": expected a non-empty string relative to the input root`);
  }
  const normalized = path.posix.normalize(relativePath);
  if (path.posix.isAbsolute(relativePath) || normalized === '..' || normalized.startsWith('../')) {
    throw new Error(`${where} has path ${JSON.stringify(relativePath)}, which leaves the input root; paths must be relative and stay inside it`);
  }
  return relativePath;
}

/** Returns whether a line contains only white space. Such lines carry no item, and both passes over the manifest skip them. */
function isBlank(line: string): boolean {
  return line.trim() === '';
}

/** Counts the manifest's items and checks every line, so a bad manifest fails the job before any `run()` call. */
export async function countManifestItems(manifestPath: string): Promise<number> {
  const reader = await LineReader.open(manifestPath);
  try {
    let items = 0;
    for (let line = await reader.nextLine(); line !== undefined; line = await reader.nextLine()) {
      if (isBlank(line)) continue;
      parseManifestLine(line, reader.lineNumber, manifestPath);
      items += 1;
    }
    return items;
  } finally {
    await reader.close();
  }
}

/**
 * Yields the manifest's mini-batches in order, reading the file as they are requested. Mini-batches for which
 * `isFinished` returns true are passed over without parsing their lines.
 */
export async function* readMiniBatches(
  manifestPath: string,
  inputRoot: string,
  miniBatchSize: number,
  isFinished: (index: number) => boolean,
): AsyncGenerator<MiniBatch> {
  const reader = await LineReader.open(manifestPath);
  try {
    let index = 0;
    let items: string[] = [];
    let itemsInBatch = 0;
    for (let line = await reader.nextLine(); line !== undefined; line = await reader.nextLine()) {
      if (isBlank(line)) continue;
      if (!isFinished(index)) items.push(path.join(inputRoot, parseManifestLine(line, reader.lineNumber, manifestPath)));
      itemsInBatch += 1;
      if (itemsInBatch < miniBatchSize) continue;

      if (!isFinished(index)) yield { index, items };
      index += 1;
      items = [];
      itemsInBatch = 0;
    }
    if (itemsInBatch > 0 && !isFinished(index)) yield { index, items };
  } finally {
    await reader.close();
  }
}
