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
  let written: Awaited<ReturnType<typeof writeRescoreManifest>>;
  try {
    written = await writeRescoreManifest({ ledgerPath: ledgerFile, manifestPath: manifestFile, destination });
  } catch (error) {
    // The ledger and the manifest disagree: the results folder belongs to another dataset or was edited.
    if (error instanceof StageError || !(error instanceof Error) || 'code' in error) throw error;
    throw new StageError(
      'InvalidInput',
      `the item ledger in ${input.resultsFolder} does not match dataset ${input.dataset.datasetName}:${input.dataset.version} ` +
        `(${error.message}); give the resultsFolder of the batch that scored this dataset`,
      { resultsFolder: input.resultsFolder },
    );
  }
  return {
    kind: input.kind,
    manifestFile: destination,
    itemCount: written.itemCount,
    totalBytes: written.totalBytes,
    manifestSha256: written.sha256,
  };
}
