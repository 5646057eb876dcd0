import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { opendir, stat } from 'node:fs/promises';
import path from 'node:path';
import { finished } from 'node:stream/promises';
import { compareCodeUnits } from '../common/files';

/** One manifest line: a file's path relative to the dataset root, with `/` separators, and its size in bytes. */
export interface ManifestEntry {
  path: string;
  size: number;
}

export interface ManifestSummary {
  itemCount: number;
  totalBytes: number;
  /** SHA-256 of the manifest file's bytes, hex. */
  sha256: string;
}

/** Files listed between two progress reports. */
const PROGRESS_EVERY = 1000;

/**
 * Walks `root` recursively in sorted order and writes one JSON line per regular file to `destination`, streaming,
 * so memory contains one directory's entry names at a time, never the whole listing. Symbolic links to files count as
 * files; links to folders are not followed, so a link cycle cannot loop. Paths keep their exact characters: no
 * Unicode normalization and no URL encoding, because the entry script gets the same names from the file system.
 */
export async function writeManifest(
  root: string,
  destination: string,
  onProgress: (filesListed: number) => void,
): Promise<ManifestSummary> {
  const out = createWriteStream(destination, { flags: 'wx' });
  const hash = createHash('sha256');
  let itemCount = 0;
  let totalBytes = 0;

  const write = async (line: string): Promise<void> => {
    hash.update(line);
    if (!out.write(line)) await new Promise<void>((resolve) => out.once('drain', resolve));
  };

  const walk = async (folder: string, relative: string): Promise<void> => {
    const entries: { name: string; isDirectory: boolean; isFile: boolean; isLink: boolean }[] = [];
    for await (const entry of await opendir(folder)) {
      entries.push({ name: entry.name, isDirectory: entry.isDirectory(), isFile: entry.isFile(), isLink: entry.isSymbolicLink() });
    }
    // Code-unit order, not locale order, so the manifest and its hash are the same on every machine.
    entries.sort((a, b) => compareCodeUnits(a.name, b.name));

    for (const entry of entries) {
      const absolute = path.join(folder, entry.name);
      const relativePath = relative === '' ? entry.name : `${relative}/${entry.name}`;
      if (entry.isDirectory) {
        await walk(absolute, relativePath);
        continue;
      }
      let size: number | undefined;
      if (entry.isFile) {
        size = (await stat(absolute)).size;
      } else if (entry.isLink) {
        const target = await stat(absolute).catch(() => undefined);
        if (target?.isFile()) size = target.size;
      }
      if (size === undefined) continue;

      await write(`${JSON.stringify({ path: relativePath, size } satisfies ManifestEntry)}\n`);
      itemCount += 1;
      totalBytes += size;
      if (itemCount % PROGRESS_EVERY === 0) onProgress(itemCount);
    }
  };

  try {
    await walk(root, '');
  } finally {
    out.end();
    await finished(out);
  }
  onProgress(itemCount);
  return { itemCount, totalBytes, sha256: hash.digest('hex') };
}

/** Returns a temporary file name next to `finalPath`, for write-then-rename. */
export function temporarySibling(finalPath: string): string {
  return path.join(path.dirname(finalPath), `.${path.basename(finalPath)}.${randomUUID()}.tmp`);
}
