import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { StageError } from '../../errors';
import { LEDGER_FILE } from '../../ledger/batch-ledger';
import { writeRescoreManifest } from '../../ledger/rescore-manifest';
import type { ItemSelection, SelectItemsInput } from '../../types';
import { pathExists } from './files';

/**
 * Writes the manifest of the items that the item ledger in `input.resultsFolder` records as failed, for the job
 * `jobName`, into `<resultsFolder>/selections/<jobName>.jsonl`. `manifestFile` is the batch's whole manifest on this
 * machine. A retried call finds the manifest it wrote and reuses it.
 */
export async function writeFailedItemsManifest(
  input: SelectItemsInput,
  manifestFile: string,
  jobName: string,
): Promise<Omit<ItemSelection, 'inputRoot'>> {
  const ledgerFile = path.join(input.resultsFolder, LEDGER_FILE);
  if (!(await pathExists(ledgerFile))) {
    throw new StageError(
      'NotFound',
      `results folder ${input.resultsFolder} has no item ledger ${LEDGER_FILE}; only a batch whose results were collected can be rescored. ` +
        'Check resultsFolder, or run the batch again',
      { resultsFolder: input.resultsFolder },
    );
  }
  const folder = path.join(input.resultsFolder, 'selections');
  await mkdir(folder, { recursive: true });
  const destination = path.join(folder, `${jobName}.jsonl`);
  const written = await writeRescoreManifest({ ledgerPath: ledgerFile, manifestPath: manifestFile, destination });
  return {
    kind: input.kind,
    manifestFile: destination,
    itemCount: written.itemCount,
    totalBytes: written.totalBytes,
    manifestSha256: written.sha256,
  };
}
