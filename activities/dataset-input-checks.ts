/**
 * The input checks of the register-dataset stage, shared by the backends. They run on the manifest just written,
 * before the dataset version is registered, so a batch with an error creates nothing and submits nothing.
 */
import path from 'node:path';
import { asyncLocalStorage } from '@temporalio/activity';
import type { Logger } from '@temporalio/common';
import { projectRoot } from '../common/project-paths';
import type { Backend } from '../workflows/input';
import { StageError } from './errors';
import { checkInputs, type InputIssue } from './ledger/input-checks';
import { InvalidScoringRatesFileError, readScoringRate, type ScoringRateMeasurement } from './ledger/scoring-rate';
import type { RegisterDatasetInput } from './types';

/** Examples per issue kept in `DatasetRef.inputWarnings` and in failure details, which enter workflow history. */
const MAX_HISTORY_EXAMPLES = 3;
/** Characters per example kept there; a longer path is cut and ends with "…". */
const MAX_EXAMPLE_CHARS = 200;
/** Codes of the checks that use the measured scoring rate. */
const SIZE_CODES: ReadonlySet<InputIssue['code']> = new Set(['file_exceeds_timeout', 'mini_batch_exceeds_timeout']);

export interface DatasetInputCheckOptions {
  backend: Backend;
  /** The manifest just written: a JSON Lines file on the worker. */
  manifestPath: string;
  /** The input folder as the batch names it, for messages. */
  inputFolder: string;
  checks: RegisterDatasetInput['checks'];
  /** Folder of the backend's scoring rates file (see ledger/scoring-rate.ts). */
  scoringRateFolder: string;
  /** Folder for the checks' temporary files. @default the OS temporary folder */
  temporaryFolder?: string;
}

/**
 * Runs the input checks on a dataset's manifest and returns the warnings, trimmed for workflow history. Throws
 * `StageError('InvalidInput')` whose message lists every error with its examples. An empty manifest is not an
 * error here, because the workflow ends such a batch as `nothing_to_score` without submitting a job.
 */
export async function checkDatasetInput(options: DatasetInputCheckOptions): Promise<InputIssue[]> {
  const context = asyncLocalStorage.getStore();
  const { checks } = options;
  const rate = checks === undefined ? undefined : await findScoringRate(options, context?.log);

  const report = await checkInputs({
    manifestPath: options.manifestPath,
    inputFolder: options.inputFolder,
    ...(checks !== undefined
      ? { programArguments: checks.programArguments, runInvocationTimeout: checks.runInvocationTimeout, miniBatchSize: checks.miniBatchSize }
      : {}),
    ...(rate !== undefined ? { measuredBytesPerSecond: rate.bytesPerSecond } : {}),
    ...(options.temporaryFolder !== undefined ? { temporaryFolder: options.temporaryFolder } : {}),
    ...(context !== undefined ? { signal: context.cancellationSignal } : {}),
  });

  const warnings = report.warnings.map((issue) => (rate !== undefined && SIZE_CODES.has(issue.code) ? withRateSource(issue, rate) : issue));
  const errors = report.errors.filter((issue) => issue.code !== 'empty_input');
  if (errors.length > 0) {
    throw new StageError('InvalidInput', describeErrors(options.inputFolder, errors), {
      inputFolder: options.inputFolder,
      errors: errors.map(trimForHistory),
      warnings: warnings.map(trimForHistory),
    });
  }
  return warnings.map(trimForHistory);
}

/** Appends where the rate comes from to a size warning, because the rate is an estimate. */
function withRateSource(issue: InputIssue, rate: ScoringRateMeasurement): InputIssue {
  const source =
    `The rate was measured on job ${rate.jobName} (${rate.totalBytes} bytes in ${rate.runSeconds.toFixed(1)} s on ${rate.processes} ` +
    `${rate.processes === 1 ? 'process' : 'processes'}). It includes process start and init(), so it is a lower bound, ` +
    'and the warning can be wrong when that job had few files';
  return { ...issue, message: `${issue.message}. ${source}` };
}

/**
 * Returns the scoring rate last measured on the batch's entry script, or undefined (logged at debug) when there is
 * none, so the file-size check is skipped rather than run against a guessed rate.
 */
async function findScoringRate(
  options: DatasetInputCheckOptions,
  log: Logger | undefined,
): Promise<ScoringRateMeasurement | undefined> {
  const entryScript = options.checks?.entryScript;
  if (entryScript === undefined) {
    log?.debug('File sizes not checked: the checks name no entry script to look up a scoring rate for', { backend: options.backend });
    return undefined;
  }
  // The same default code directory as the backends use when they submit the job.
  const key = { backend: options.backend, codeDirectory: options.checks?.codeDirectory ?? path.join(projectRoot(), 'scoring'), entryScript };

  let rate: ScoringRateMeasurement | undefined;
  try {
    rate = await readScoringRate(options.scoringRateFolder, key);
  } catch (error) {
    if (!(error instanceof InvalidScoringRatesFileError)) throw error;
    log?.warn('File sizes not checked: the scoring rates file is invalid', { file: error.file, error: error.message });
    return undefined;
  }
  if (rate === undefined) {
    log?.debug('File sizes not checked: no scoring rate measured on this entry script yet', { ...key, folder: options.scoringRateFolder });
  } else {
    log?.debug('Checking file sizes against the measured scoring rate', { ...key, ...rate });
  }
  return rate;
}

/** Builds the stage's failure message: each error's message with its examples, numbered. */
function describeErrors(inputFolder: string, errors: readonly InputIssue[]): string {
  const described = errors.map((issue, index) => {
    const more = issue.count > issue.examples.length ? `; and ${issue.count - issue.examples.length} more` : '';
    const examples = issue.examples.length > 0 ? ` (affected: ${issue.examples.join('; ')}${more})` : '';
    return `${index + 1}) ${issue.message}${examples}`;
  });
  const found = errors.length === 1 ? '1 problem' : `${errors.length} problems`;
  return `input checks of ${inputFolder} found ${found}, so no dataset version was registered and nothing was submitted: ${described.join(' ')}`;
}

function trimForHistory(issue: InputIssue): InputIssue {
  const examples = issue.examples
    .slice(0, MAX_HISTORY_EXAMPLES)
    .map((example) => (example.length > MAX_EXAMPLE_CHARS ? `${example.slice(0, MAX_EXAMPLE_CHARS - 1)}…` : example));
  return { ...issue, examples };
}
