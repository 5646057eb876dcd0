import path from 'node:path';
import { readLineBatches } from './line-files';
import type { ManifestEntry } from '../backends/local/manifest';

const MANIFEST_LINE_SHAPE = 'each line must be {"path": "<relative path>", "size": <bytes>}';

/**
 * Parses one manifest line, or throws an error that names the manifest, the line number and the expected shape.
 * The path must be a non-empty relative path that stays inside the input folder, as the local runner requires,
 * and the size a non-negative integer.
 */
export function readManifestEntry(line: string, lineNumber: number, manifestPath: string): ManifestEntry {
  const where = `manifest ${manifestPath} line ${lineNumber}`;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    throw new Error(`${where} is not valid JSON (${(error as Error).message}); ${MANIFEST_LINE_SHAPE}`, { cause: error });
  }
  if (typeof value !== 'object' || value === null) throw new Error(`${where} is not a JSON object; ${MANIFEST_LINE_SHAPE}`);

  const { path: relativePath, size } = value as { path?: unknown; size?: unknown };
  if (typeof relativePath !== 'string' || relativePath === '' || relativePath.includes('\0')) {
    throw new Error(`${where} has no valid "path": expected a non-empty string relative to the input folder`);
  }
  const normalized = path.posix.normalize(relativePath);
  if (path.posix.isAbsolute(relativePath) || normalized === '..' || normalized.startsWith('../')) {
    throw new Error(`${where} has path ${JSON.stringify(relativePath)}, which leaves the input folder; paths must be relative and stay inside it`);
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new Error(`${where} has size ${JSON.stringify(size)}; expected a non-negative integer number of bytes`);
  }
  return { path: relativePath, size };
}

/** Yields the relative paths of a manifest file in order, streaming; a shared iterator can feed several workers. */
export async function* readManifestPaths(manifestPath: string): AsyncGenerator<string, void, undefined> {
  for await (const batch of readLineBatches(manifestPath)) {
    for (let offset = 0; offset < batch.lines.length; offset += 1) {
      const line = batch.lines[offset];
      if (line === undefined || line === '') continue;
      yield readManifestEntry(line, batch.firstLineNumber + offset, manifestPath).path;
    }
  }
}
