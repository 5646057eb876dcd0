import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathExists } from '../backends/common/files';
import type { CollectedResults, LedgerSummary } from '../types';
import { buildLedger, type LedgerCounts } from './build-ledger';

/** File names of a batch's ledger and its counts, next to the results file. */
export const LEDGER_FILE = 'ledger.jsonl';
const LEDGER_COUNTS_FILE = 'ledger-counts.json';

/**
 * Builds the batch's item ledger next to its results, once: a retried collect finds the counts file and reuses the
 * ledger, and a ledger left without a counts file (a build cut short) is built again. Returns a small summary for
 * the workflow; the ledger itself never enters history.
 */
export async function buildBatchLedger(collected: CollectedResults, signal?: AbortSignal): Promise<LedgerSummary | undefined> {
  if (!collected.manifestFile) return undefined;
  const ledgerFile = path.join(collected.resultsFolder, LEDGER_FILE);
  const countsFile = path.join(collected.resultsFolder, LEDGER_COUNTS_FILE);

  let counts: LedgerCounts;
  if (await pathExists(countsFile)) {
    counts = JSON.parse(await readFile(countsFile, 'utf8')) as LedgerCounts;
  } else {
    await rm(ledgerFile, { force: true });
    const result = await buildLedger({
      manifestPath: collected.manifestFile,
      ...(collected.resultsFile ? { resultsPath: collected.resultsFile } : {}),
      ...(collected.failureRecordsFile ? { failureRecordsPath: collected.failureRecordsFile } : {}),
      ledgerPath: ledgerFile,
      ...(signal ? { signal } : {}),
    });
    counts = result.counts;
    await writeFile(countsFile, `${JSON.stringify(counts, null, 2)}\n`);
  }
  return {
    ledgerFile,
    scored: counts.scored,
    failed: counts.failed,
    excluded: counts.excluded,
    duplicateRows: counts.duplicateRows,
    unknownRows: counts.unknownRows,
    failedByReason: counts.failedByReason,
  };
}
