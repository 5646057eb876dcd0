import { readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathExists, sha256OfFile } from '../backends/common/files';
import type { CollectedResults, LedgerSummary, ResultsRound } from '../types';
import { buildLedger, type FailureRecordsFile, type LedgerCounts, type NoResultReason } from './build-ledger';
import { temporaryNameFor } from './line-files';

/** File names of a batch's ledger and its counts, next to the results file. */
export const LEDGER_FILE = 'ledger.jsonl';
const LEDGER_COUNTS_FILE = 'ledger-counts.json';

/**
 * Version of the rules by which `buildLedger` decides an item's state. Raising it makes every counts file stale,
 * so ledgers built by older rules are built again.
 */
const LEDGER_RULES_VERSION = 2;

/** Inputs of a batch's ledger besides the collected results. Each one that is set replaces what `collected.rounds` gives. */
export interface BatchLedgerInputs {
  /** Lines of the results file where rounds 2, 3, ... begin; see `BuildLedgerOptions.resultsRoundStarts`. */
  resultsRoundStarts?: number[];
  /** Failure records files, each with its round. */
  failureRecords?: FailureRecordsFile[];
  /** Reason attached to items that end `no_result`. */
  noResultReason?: NoResultReason;
}

interface FileFingerprint {
  path: string;
  size: number;
  sha256: string;
}

/** Fingerprint of the files and settings a ledger was built from; a ledger whose inputs differ is built again. */
interface LedgerInputs {
  rulesVersion: number;
  manifest: FileFingerprint;
  results: FileFingerprint | null;
  resultsRoundStarts: number[];
  failureRecords: (FileFingerprint & { round: number })[];
  noResultReason: NoResultReason | null;
}

/** Contents of the counts file: the ledger's counts, and under `inputs` what the ledger was built from. */
type CountsDocument = LedgerCounts & { inputs: LedgerInputs };

/**
 * Builds the batch's item ledger next to its results. The counts file records what the ledger was built from: the
 * manifest, the results file (size and SHA-256), the rounds, the failure records files and the no-result reason. A
 * retried collect whose inputs are unchanged reuses the ledger, and a follow-up round that appended rows builds it
 * again. A rebuilt ledger replaces the old one by a rename, so `ledger.jsonl` is always a complete ledger, and the
 * counts file is written last, so a build cut short is done again. Returns a small summary for the workflow; the
 * ledger itself never enters history.
 *
 * The rounds, their failure records and the no-result reason come from `collected.rounds`, unless `inputs` sets
 * them. The no-result reason is the last round's: an item without a row or a failure record in any round was part
 * of every round's job, the last one included.
 */
export async function buildBatchLedger(
  collected: CollectedResults,
  signal?: AbortSignal,
  inputs: BatchLedgerInputs = {},
): Promise<LedgerSummary | undefined> {
  if (!collected.manifestFile) return undefined;
  const ledgerFile = path.join(collected.resultsFolder, LEDGER_FILE);
  const countsFile = path.join(collected.resultsFolder, LEDGER_COUNTS_FILE);

  const fromRounds = inputsFromRounds(collected);
  const resultsRoundStarts = inputs.resultsRoundStarts ?? fromRounds.resultsRoundStarts ?? [];
  const failureRecords = inputs.failureRecords ?? fromRounds.failureRecords ?? [];
  const noResultReason = inputs.noResultReason ?? fromRounds.noResultReason;
  const ledgerInputs = await fingerprintInputs(collected, collected.manifestFile, resultsRoundStarts, failureRecords, noResultReason);

  let counts: LedgerCounts | undefined = await readCountsBuiltFrom(countsFile, ledgerFile, ledgerInputs);
  if (counts === undefined) {
    const draft = temporaryNameFor(ledgerFile);
    try {
      const result = await buildLedger({
        manifestPath: collected.manifestFile,
        ...(collected.resultsFile ? { resultsPath: collected.resultsFile, resultsRoundStarts } : {}),
        failureRecords,
        ...(noResultReason ? { noResultReason } : {}),
        ledgerPath: draft,
        ...(signal ? { signal } : {}),
      });
      counts = result.counts;
      await rename(draft, ledgerFile);
    } finally {
      await rm(draft, { force: true });
    }
    await writeCountsFile(countsFile, { ...counts, inputs: ledgerInputs });
  }

  return {
    ledgerFile,
    scored: counts.scored,
    failed: counts.failed,
    excluded: counts.excluded,
    duplicateRows: counts.duplicateRows,
    unknownRows: counts.unknownRows,
    failedByReason: counts.failedByReason,
    failureExamples: counts.failureExamples,
  };
}

/** Derives the ledger inputs that `collected.rounds` records. Rounds must be numbered 1, 2, 3, ... */
function inputsFromRounds(collected: CollectedResults): BatchLedgerInputs {
  const rounds: ResultsRound[] = [...(collected.rounds ?? [])].sort((a, b) => a.round - b.round);
  rounds.forEach((round, index) => {
    if (round.round !== index + 1) {
      throw new Error(
        `results rounds of ${collected.resultsFolder} are numbered ${rounds.map((each) => each.round).join(', ')}; ` +
          'expected 1, 2, 3, ... without gaps, so restore the list of rounds or choose another resultsFolder',
      );
    }
  });

  const noResultReason = rounds.at(-1)?.noResultReason;
  return {
    ...(collected.resultsFile ? { resultsRoundStarts: rounds.slice(1).map((round) => round.firstLine) } : {}),
    failureRecords: rounds.flatMap((round) => (round.failureRecordsFile ? [{ path: round.failureRecordsFile, round: round.round }] : [])),
    ...(noResultReason ? { noResultReason } : {}),
  };
}

async function fingerprintInputs(
  collected: CollectedResults,
  manifestFile: string,
  resultsRoundStarts: number[],
  failureRecords: FailureRecordsFile[],
  noResultReason: NoResultReason | undefined,
): Promise<LedgerInputs> {
  const results = collected.resultsFile ? await fingerprintFile(collected.resultsFile, collected.resultsSha256) : null;
  const failureFingerprints: LedgerInputs['failureRecords'] = [];
  for (const file of failureRecords) failureFingerprints.push({ ...(await fingerprintFile(file.path)), round: file.round });
  return {
    rulesVersion: LEDGER_RULES_VERSION,
    manifest: await fingerprintFile(manifestFile),
    results,
    resultsRoundStarts: collected.resultsFile ? resultsRoundStarts : [],
    failureRecords: failureFingerprints,
    noResultReason: noResultReason ?? null,
  };
}

/**
 * Returns the size and SHA-256 of `file`. `knownSha256`, the collect's own hash of the file, saves reading it again,
 * and the size read here still catches rows appended after that hash.
 */
async function fingerprintFile(file: string, knownSha256?: string): Promise<FileFingerprint> {
  const { size } = await stat(file);
  return { path: file, size, sha256: knownSha256 ?? (await sha256OfFile(file)) };
}

/**
 * Returns the counts of the existing ledger when the counts file records exactly `inputs` and the ledger file is
 * present, and undefined when the ledger must be built (again).
 */
async function readCountsBuiltFrom(countsFile: string, ledgerFile: string, inputs: LedgerInputs): Promise<LedgerCounts | undefined> {
  let document: Partial<CountsDocument>;
  try {
    document = JSON.parse(await readFile(countsFile, 'utf8')) as Partial<CountsDocument>;
  } catch (error) {
    // A missing counts file means no finished build, and an unreadable one cannot vouch for the ledger either.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || error instanceof SyntaxError) return undefined;
    throw error;
  }
  if (JSON.stringify(document.inputs) !== JSON.stringify(inputs)) return undefined;
  if (!(await pathExists(ledgerFile))) return undefined;
  const counts: Partial<CountsDocument> = { ...document };
  delete counts.inputs;
  return counts as LedgerCounts;
}

async function writeCountsFile(countsFile: string, document: CountsDocument): Promise<void> {
  const draft = temporaryNameFor(countsFile);
  try {
    await writeFile(draft, `${JSON.stringify(document, null, 2)}\n`, { flag: 'wx' });
    await rename(draft, countsFile);
  } finally {
    await rm(draft, { force: true });
  }
}
