/**
 * Failure summary of a finished Azure ML parallel job, read from the logs that the parallel step leaves in the
 * workspace's artifact store below `ExperimentRun/dcid.<job name>/`:
 *
 *   logs/job_result.txt                            the job's outcome and, on failure, the reason
 *   logs/job_error.txt                             errors that the entry script raised
 *   logs/sys/job_report/processed_mini-batches.csv one row per processed mini-batch: result, error type, message
 *
 * NOTE: Azure ML documents these files and their purpose, but not their exact wording or CSV column names. The
 * parsers read the layout that the project's Azure ML emulator writes, accept a few other column names, and
 * return what they cannot find as undefined or empty. Checking them against logs of a real workspace is still open.
 */
import { RestError } from '@azure/core-rest-pipeline';
import type { ContainerClient } from '@azure/storage-blob';
import { compareCodeUnits } from '../common/files';
import { callAzure } from './rest-errors';

export const JOB_RESULT_FILE = 'logs/job_result.txt';
export const JOB_ERROR_FILE = 'logs/job_error.txt';
export const MINI_BATCH_REPORT_FILE = 'logs/sys/job_report/processed_mini-batches.csv';

/** How much of each log file is read. */
export interface JobLogReadLimits {
  /** Bytes read of job_result.txt and job_error.txt. The summary needs their first lines only. */
  textBytes: number;
  /** Bytes read of processed_mini-batches.csv. Failures past it are not counted. */
  reportBytes: number;
}

/** 1 MiB of each text log, and 32 MiB of the report: about 160 000 rows of 200 bytes. */
export const DEFAULT_JOB_LOG_READ_LIMITS: JobLogReadLimits = { textBytes: 1024 * 1024, reportBytes: 32 * 1024 * 1024 };
/** Error messages kept in `firstErrors`. */
const MAX_FIRST_ERRORS = 3;
/** Characters kept of one error message or reason. */
const MAX_LINE_CHARS = 300;
/** Key of `failuresByErrorType` for failures whose row names no error type. */
export const UNKNOWN_ERROR_TYPE = 'unknown';

/** The text of the three log files; a missing file is undefined. */
export interface JobLogTexts {
  jobResult?: string;
  jobError?: string;
  miniBatchReport?: string;
  /** Files of which only the first part was read, because they exceed the read limit. */
  truncatedFiles?: string[];
}

/** Summary of a finished job's logs: its outcome, the failure's cause and the failed mini-batches. */
export interface JobLogSummary {
  jobName: string;
  /** First line of job_result.txt, such as "Job X failed."; undefined when the file is missing or empty. */
  statusLine?: string;
  /** The outcome that the status line names, if it names one. */
  outcome?: 'completed' | 'failed' | 'canceled';
  /** The line of job_result.txt that gives the failure's cause, without its "Reason:" label. */
  reason?: string;
  /** Mini-batches that processed_mini-batches.csv lists as failed and never as succeeded. */
  failedMiniBatches: number;
  /** Failed mini-batches by the error type of their last failure, such as `{ TimeoutError: 2, ValueError: 1 }`. */
  failuresByErrorType: Record<string, number>;
  /** Up to three error messages: from the failed mini-batches' rows, else from job_error.txt. */
  firstErrors: string[];
  /** The job's log folder, `azureml://datastores/<artifact datastore>/paths/ExperimentRun/dcid.<job>/logs/`. */
  logsLocation: string;
  /** Log files, relative to the job's folder, that do not exist. A job that never ran has none of them. */
  missingFiles: string[];
  /** Log files of which only the first part was read, because they exceed the read limit. */
  truncatedFiles: string[];
}

/** Failures that processed_mini-batches.csv reports. */
export interface MiniBatchReportSummary {
  failedMiniBatches: number;
  failuresByErrorType: Record<string, number>;
  /** One message per failed mini-batch, in the order of the report, such as "mini-batch 3: ValueError: bad pixel". */
  errors: string[];
}

/** Returns the blob prefix of a job's folder in the artifact store, with a trailing slash. */
export function jobLogPrefix(jobName: string): string {
  return `ExperimentRun/dcid.${jobName}/`;
}

/** Returns the azureml:// URI of a job's log folder in the artifact datastore. */
export function jobLogsLocation(datastoreName: string, jobName: string): string {
  return `azureml://datastores/${datastoreName}/paths/${jobLogPrefix(jobName)}logs/`;
}

/**
 * Reads the three log files of a job from the artifact store's container, each up to its limit. Missing files are
 * left undefined. Throws a `StageError` when a file exists but cannot be read, naming `blobRole` for a denied read.
 */
export async function readJobLogTexts(
  container: ContainerClient,
  jobName: string,
  blobRole: string,
  limits: JobLogReadLimits = DEFAULT_JOB_LOG_READ_LIMITS,
): Promise<JobLogTexts> {
  const prefix = jobLogPrefix(jobName);
  const read = (file: string, maxBytes: number) =>
    callAzure({ action: `read job log ${prefix}${file}`, role: blobRole }, () => readBlobPrefix(container, `${prefix}${file}`, maxBytes));

  const [jobResult, jobError, miniBatchReport] = await Promise.all([
    read(JOB_RESULT_FILE, limits.textBytes),
    read(JOB_ERROR_FILE, limits.textBytes),
    read(MINI_BATCH_REPORT_FILE, limits.reportBytes),
  ]);
  const truncatedFiles: string[] = [];
  if (jobResult?.truncated) truncatedFiles.push(JOB_RESULT_FILE);
  if (jobError?.truncated) truncatedFiles.push(JOB_ERROR_FILE);
  let reportText = miniBatchReport?.text;
  if (miniBatchReport?.truncated) {
    truncatedFiles.push(MINI_BATCH_REPORT_FILE);
    // The cut may split a row, so the report ends at its last complete line.
    reportText = reportText?.slice(0, reportText.lastIndexOf('\n') + 1);
  }
  return {
    ...(jobResult === undefined ? {} : { jobResult: jobResult.text }),
    ...(jobError === undefined ? {} : { jobError: jobError.text }),
    ...(reportText === undefined ? {} : { miniBatchReport: reportText }),
    truncatedFiles,
  };
}

/**
 * Downloads up to `maxBytes` of a blob as UTF-8 text; undefined when the blob does not exist. A cut in the middle
 * of a multi-byte character leaves a replacement character at the end.
 */
async function readBlobPrefix(container: ContainerClient, blobName: string, maxBytes: number): Promise<{ text: string; truncated: boolean } | undefined> {
  let response;
  try {
    response = await container.getBlobClient(blobName).download();
  } catch (error) {
    if (error instanceof RestError && error.statusCode === 404) return undefined;
    throw error;
  }
  const body = response.readableStreamBody;
  if (body === undefined) return { text: '', truncated: false };

  const chunks: Buffer[] = [];
  let bytes = 0;
  let truncated = false;
  // Leaving the loop early destroys the stream, which ends the download.
  for await (const chunk of body) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    chunks.push(buffer);
    bytes += buffer.length;
    if (bytes >= maxBytes) {
      truncated = bytes > maxBytes || (response.contentLength ?? 0) > maxBytes;
      break;
    }
  }
  return { text: Buffer.concat(chunks).subarray(0, maxBytes).toString('utf8'), truncated };
}

/** Builds the summary of a job's logs from their text. */
export function summarizeJobLogs(jobName: string, logsLocation: string, texts: JobLogTexts): JobLogSummary {
  const missingFiles: string[] = [];
  if (texts.jobResult === undefined) missingFiles.push(JOB_RESULT_FILE);
  if (texts.jobError === undefined) missingFiles.push(JOB_ERROR_FILE);
  if (texts.miniBatchReport === undefined) missingFiles.push(MINI_BATCH_REPORT_FILE);

  const result = texts.jobResult === undefined ? {} : parseJobResult(texts.jobResult);
  const report = texts.miniBatchReport === undefined ? undefined : summarizeMiniBatchReport(texts.miniBatchReport);
  let firstErrors = report?.errors.slice(0, MAX_FIRST_ERRORS) ?? [];
  if (firstErrors.length === 0 && texts.jobError !== undefined) firstErrors = errorLines(texts.jobError).slice(0, MAX_FIRST_ERRORS);

  return {
    jobName,
    ...result,
    failedMiniBatches: report?.failedMiniBatches ?? 0,
    failuresByErrorType: report?.failuresByErrorType ?? {},
    firstErrors,
    logsLocation,
    missingFiles,
    truncatedFiles: [...(texts.truncatedFiles ?? [])],
  };
}

/**
 * Reads the status line and the reason from job_result.txt. The reason is the text after a "Reason:" label. Else,
 * unless the status line reports a completed job, it is the first later line that names an error, an exception, a
 * timeout or an exceeded threshold. A line that only mentions "failed" does not count, because count lines such as
 * "Items: 5 succeeded, 0 failed" would match.
 */
export function parseJobResult(text: string): Pick<JobLogSummary, 'statusLine' | 'outcome' | 'reason'> {
  const lines = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '');
  const statusLine = lines[0];
  if (statusLine === undefined) return {};

  const outcomeWord = /\b(completed|failed|canceled|cancelled)\b/i.exec(statusLine)?.[1]?.toLowerCase();
  let outcome: JobLogSummary['outcome'];
  if (outcomeWord === 'cancelled') outcome = 'canceled';
  else if (outcomeWord !== undefined) outcome = outcomeWord as JobLogSummary['outcome'];

  const later = lines.slice(1);
  const labelled = later.find((line) => /^reason\s*:/i.test(line))?.replace(/^reason\s*:\s*/i, '');
  const reason = labelled ?? (outcome === 'completed' ? undefined : later.find((line) => /error|exception|timed? ?out|exceed/i.test(line)));
  return {
    statusLine: shorten(statusLine),
    ...(outcome === undefined ? {} : { outcome }),
    ...(reason === undefined || reason === '' ? {} : { reason: shorten(reason) }),
  };
}

/** Returns the lines of job_error.txt that state an error: unindented lines other than traceback headers. */
function errorLines(text: string): string[] {
  const lines: string[] = [];
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === '' || /^\s/.test(line)) continue;
    if (line.startsWith('Traceback (most recent call last)') || /^no errors?\b/i.test(line)) continue;
    const shortened = shorten(line);
    if (!lines.includes(shortened)) lines.push(shortened);
  }
  return lines;
}

/** Header names, normalized by `normalizeHeader`, that each column of processed_mini-batches.csv may have. */
const REPORT_COLUMNS = {
  miniBatch: ['mini_batch', 'mini_batch_id', 'mini_batch_index', 'minibatch', 'minibatch_id', 'task_id'],
  result: ['result', 'status', 'outcome'],
  errorType: ['error_type', 'exception_type', 'error_code'],
  errorMessage: ['error_message', 'error', 'message', 'exception'],
};
const SUCCESS_RESULTS = new Set(['success', 'succeeded', 'completed', 'ok']);

/**
 * Counts the failed mini-batches of processed_mini-batches.csv. A mini-batch fails when it has a failure row and
 * no success row, because a retry that succeeded makes the earlier failures irrelevant. Its error type is that of
 * its last failure row. Without a result column, a row with an error type or message is a failure. Without a
 * mini-batch column, each failure row counts as one mini-batch.
 */
export function summarizeMiniBatchReport(csvText: string): MiniBatchReportSummary {
  const rows = parseCsv(csvText);
  const isBlank = (row: string[]): boolean => row.every((value) => value.trim() === '');
  const headerIndex = rows.findIndex((row) => !isBlank(row));
  if (headerIndex < 0) return { failedMiniBatches: 0, failuresByErrorType: {}, errors: [] };
  const header = rows[headerIndex];

  const names = header.map(normalizeHeader);
  const column = (candidates: string[]): number => names.findIndex((name) => candidates.includes(name));
  const miniBatchColumn = column(REPORT_COLUMNS.miniBatch);
  const resultColumn = column(REPORT_COLUMNS.result);
  const errorTypeColumn = column(REPORT_COLUMNS.errorType);
  const errorMessageColumn = column(REPORT_COLUMNS.errorMessage);
  const cell = (row: string[], index: number): string => (index < 0 ? '' : (row[index] ?? '').trim());

  const succeeded = new Set<string>();
  /** Last failure row per mini-batch, in the order of each mini-batch's first failure. */
  const failures = new Map<string, { errorType: string; message: string }>();
  // Data rows are numbered from 1 after the header, blank rows included, to name failures without a mini-batch id.
  rows.slice(headerIndex + 1).forEach((row, rowIndex) => {
    if (isBlank(row)) return;
    const key = miniBatchColumn < 0 ? `row ${rowIndex + 1}` : cell(row, miniBatchColumn);
    const errorType = cell(row, errorTypeColumn);
    const message = cell(row, errorMessageColumn);
    const isSuccess = resultColumn < 0 ? errorType === '' && message === '' : SUCCESS_RESULTS.has(cell(row, resultColumn).toLowerCase());
    if (isSuccess) {
      succeeded.add(key);
      return;
    }
    failures.set(key, { errorType, message });
  });

  const failuresByErrorType: Record<string, number> = {};
  const errors: string[] = [];
  for (const [key, failure] of failures) {
    if (succeeded.has(key)) continue;
    const errorType = failure.errorType === '' ? UNKNOWN_ERROR_TYPE : failure.errorType;
    failuresByErrorType[errorType] = (failuresByErrorType[errorType] ?? 0) + 1;
    const label = miniBatchColumn < 0 ? key : `mini-batch ${key}`;
    const description = [failure.errorType, failure.message].filter((part) => part !== '').join(': ') || 'no error recorded';
    errors.push(shorten(`${label}: ${description}`));
  }
  return { failedMiniBatches: errors.length, failuresByErrorType, errors };
}

/** Lower-cases a header and turns each run of other characters than letters and digits into one underscore. */
function normalizeHeader(name: string): string {
  return name
    .trim()
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_|_$/g, '');
}

/**
 * Parses CSV text as RFC 4180 defines it: cells separated by commas, rows by CRLF, LF or CR, and cells in double
 * quotes may contain commas, line breaks and quotes written as two quotes. A leading byte order mark is skipped.
 * Like Python's csv module, it reads text that breaks the RFC instead of rejecting it. A quote inside an unquoted
 * cell is kept as a character, and text after a closing quote is appended to the cell. A quoted cell still open at
 * the end of the text ends there. An empty line is a row with one empty cell.
 */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let inQuotes = false;
  let atCellStart = true;
  let rowHasContent = false;

  const endCell = (): void => {
    row.push(cell);
    cell = '';
    atCellStart = true;
  };
  const endRow = (): void => {
    endCell();
    rows.push(row);
    row = [];
    rowHasContent = false;
  };

  for (let index = text.charCodeAt(0) === 0xfeff ? 1 : 0; index < text.length; index += 1) {
    const character = text[index];
    if (inQuotes) {
      if (character !== '"') {
        cell += character;
      } else if (text[index + 1] === '"') {
        cell += '"';
        index += 1;
      } else {
        inQuotes = false;
      }
      continue;
    }

    if (character === '\n' || character === '\r') {
      if (character === '\r' && text[index + 1] === '\n') index += 1;
      endRow();
      continue;
    }
    rowHasContent = true;
    if (character === ',') {
      endCell();
    } else if (character === '"' && atCellStart) {
      inQuotes = true;
      atCellStart = false;
    } else {
      cell += character;
      atCellStart = false;
    }
  }
  if (rowHasContent || inQuotes) endRow();
  return rows;
}

/**
 * Returns the reason to record for items of a job that have no row: the most frequent error type of the failed
 * mini-batches (undefined when no failure names one) and a message such as "job X failed: <reason>;
 * 3 mini-batches failed (TimeoutError 2, ValueError 1); see <logs location>".
 */
export function noResultReasonFromLogs(summary: JobLogSummary): { errorType?: string; message: string } {
  const errorType = mostFrequentErrorType(summary.failuresByErrorType);
  const parts = [`${jobOutcomePhrase(summary)}: ${summary.reason ?? summary.statusLine ?? `no reason found (${noReasonCause(summary)})`}`];
  if (summary.failedMiniBatches > 0) {
    parts.push(`${countOf(summary.failedMiniBatches, 'mini-batch', 'mini-batches')} failed (${errorTypeCounts(summary.failuresByErrorType)})`);
  }
  parts.push(`see ${summary.logsLocation}`);
  return { ...(errorType === undefined ? {} : { errorType }), message: parts.join('; ') };
}

/**
 * Returns the text of a failed job's error message after "job X failed: ": the reason, the failed mini-batches and
 * their first errors, and which log to read first.
 */
export function describeJobFailure(summary: JobLogSummary): string {
  const parts: string[] = [];
  if (summary.reason !== undefined) parts.push(summary.reason);
  else if (summary.statusLine !== undefined) parts.push(`${JOB_RESULT_FILE} gives no reason: "${summary.statusLine}"`);
  else parts.push(`no reason found (${noReasonCause(summary)}); the job may have failed before it ran, so check it in Azure ML studio`);

  if (summary.failedMiniBatches > 0) {
    parts.push(`${countOf(summary.failedMiniBatches, 'mini-batch', 'mini-batches')} failed (${errorTypeCounts(summary.failuresByErrorType)})`);
  }
  if (summary.firstErrors.length > 0) parts.push(`first errors: ${summary.firstErrors.join(' | ')}`);
  const present = [JOB_RESULT_FILE, JOB_ERROR_FILE].filter((file) => !summary.missingFiles.includes(file));
  parts.push(present.length > 0 ? `read ${present.join(' and ')} in ${summary.logsLocation}` : `logs: ${summary.logsLocation}`);
  return parts.join('; ');
}

function jobOutcomePhrase(summary: JobLogSummary): string {
  switch (summary.outcome) {
    case 'completed':
      return `job ${summary.jobName} completed`;
    case 'canceled':
      return `job ${summary.jobName} was canceled`;
    case 'failed':
      return `job ${summary.jobName} failed`;
    case undefined:
      return `job ${summary.jobName} ended`;
  }
}

/** Returns the cause of a summary having neither a reason nor a status line. */
function noReasonCause(summary: JobLogSummary): string {
  if (summary.missingFiles.length === 3) return 'the job has no logs';
  return summary.missingFiles.includes(JOB_RESULT_FILE) ? `${JOB_RESULT_FILE} is missing` : `${JOB_RESULT_FILE} is empty`;
}

/** Returns the type with the highest count; among equal counts the first in alphabetical order. Ignores `unknown`. */
function mostFrequentErrorType(counts: Record<string, number>): string | undefined {
  let best: [string, number] | undefined;
  for (const entry of Object.entries(counts).sort(([typeA], [typeB]) => compareCodeUnits(typeA, typeB))) {
    if (entry[0] === UNKNOWN_ERROR_TYPE) continue;
    if (best === undefined || entry[1] > best[1]) best = entry;
  }
  return best?.[0];
}

/** "TimeoutError 2, ValueError 1": most frequent first, equal counts in alphabetical order. */
function errorTypeCounts(counts: Record<string, number>): string {
  return Object.entries(counts)
    .sort(([typeA, countA], [typeB, countB]) => countB - countA || compareCodeUnits(typeA, typeB))
    .map(([type, count]) => `${type} ${count}`)
    .join(', ');
}

function countOf(count: number, singular: string, plural: string): string {
  return `${count} ${count === 1 ? singular : plural}`;
}

/** Puts a message on one line and cuts it to MAX_LINE_CHARS characters. */
function shorten(text: string): string {
  const line = text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
  return line.length > MAX_LINE_CHARS ? `${line.slice(0, MAX_LINE_CHARS - 3)}...` : line;
}
