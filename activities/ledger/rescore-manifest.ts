/**
 * Writes the manifest of a follow-up round: the items that the item ledger records as failed, in the manifest's
 * own `{"path", "size"}` JSON Lines format. The ledger lists the manifest's items in manifest order, one record per
 * item (excluded ones included), so the two files are read side by side, one line of each at a time, and neither
 * is held in memory.
 */
import { rm } from 'node:fs/promises';
import { parseLedgerLine } from './ledger-format';
import { HashingLineWriter, LineCursor, publishOrReuseFile, readLineBatches, temporaryNameFor } from './line-files';
import { readManifestEntry } from './manifest-lines';

export interface RescoreManifestOptions {
  /** Item ledger built from `manifestPath` (see build-ledger.ts). */
  ledgerPath: string;
  /** JSON Lines manifest, one `{"path", "size"}` per item, that the ledger was built from. */
  manifestPath: string;
  /**
   * Manifest file to create. When it already exists with the same content, such as after a retried call, it is
   * kept. With other content, the call fails.
   */
  destination: string;
  signal?: AbortSignal;
}

export interface RescoreManifest {
  /** Items in the written manifest: the ledger's failed items. */
  itemCount: number;
  /** Sum of the `size` fields of those items, in bytes. */
  totalBytes: number;
  /** SHA-256 of the written manifest, hex. */
  sha256: string;
}

/**
 * Writes the manifest lines of the items whose ledger state is `failed` to `destination`, each line exactly as the
 * input manifest spells it, in manifest order. The file is written under a temporary name next to `destination`
 * and appears under its final name only when complete. Throws an error naming both files when the ledger does not
 * list the manifest's items in order.
 */
export async function writeRescoreManifest(options: RescoreManifestOptions): Promise<RescoreManifest> {
  const draft = temporaryNameFor(options.destination);
  let written: RescoreManifest;
  try {
    written = await writeFailedItems(options, draft);
  } catch (error) {
    await rm(draft, { force: true });
    throw error;
  }
  await publishOrReuseFile(draft, options.destination, written.sha256, 'rescore manifest');
  return written;
}

async function writeFailedItems(options: RescoreManifestOptions, draft: string): Promise<RescoreManifest> {
  const { ledgerPath, manifestPath, signal } = options;
  const ledger = LineCursor.open(ledgerPath);
  const out = await HashingLineWriter.create(draft);
  let ledgerLineNumber = 0;
  let itemCount = 0;
  let totalBytes = 0;

  // Returns the next non-empty ledger line with its line number, or undefined at the end of the ledger.
  const nextLedgerLine = async (): Promise<{ line: string; lineNumber: number } | undefined> => {
    for (;;) {
      const line = ledger.takeBuffered() ?? (await ledger.next());
      if (line === undefined) return undefined;
      ledgerLineNumber += 1;
      if (line !== '') return { line, lineNumber: ledgerLineNumber };
    }
  };

  try {
    for await (const batch of readLineBatches(manifestPath)) {
      signal?.throwIfAborted();
      for (let offset = 0; offset < batch.lines.length; offset += 1) {
        const line = batch.lines[offset];
        if (line.trim() === '') continue;
        const manifestLineNumber = batch.firstLineNumber + offset;
        const entry = readManifestEntry(line, manifestLineNumber, manifestPath);

        const ledgerLine = await nextLedgerLine();
        if (ledgerLine === undefined) {
          throw new Error(
            `ledger ${ledgerPath} ends at line ${ledgerLineNumber} with no record for ${JSON.stringify(entry.path)}, which manifest ` +
              `${manifestPath} lists on line ${manifestLineNumber}; the ledger was not built from this manifest, so pass the manifest ` +
              'it was built from or build the ledger again',
          );
        }
        const record = parseLedgerLine(ledgerLine.line, ledgerLine.lineNumber, ledgerPath);
        if (record.path !== entry.path) {
          throw new Error(
            `ledger ${ledgerPath} line ${ledgerLine.lineNumber} is for ${JSON.stringify(record.path)}, but manifest ${manifestPath} ` +
              `line ${manifestLineNumber} lists ${JSON.stringify(entry.path)}; the ledger was not built from this manifest, so pass ` +
              'the manifest it was built from or build the ledger again',
          );
        }
        if (record.state !== 'failed') continue;

        await out.writeLine(line);
        itemCount += 1;
        totalBytes += entry.size;
      }
    }

    const extra = await nextLedgerLine();
    if (extra !== undefined) {
      const record = parseLedgerLine(extra.line, extra.lineNumber, ledgerPath);
      throw new Error(
        `ledger ${ledgerPath} line ${extra.lineNumber} lists ${JSON.stringify(record.path)} after the last item of manifest ` +
          `${manifestPath}; the ledger was not built from this manifest, so pass the manifest it was built from or build the ledger again`,
      );
    }
    return { itemCount, totalBytes, sha256: await out.finish() };
  } finally {
    await out.close();
    await ledger.close();
  }
}
