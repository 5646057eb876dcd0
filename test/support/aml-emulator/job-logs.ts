/**
 * Log files of a finished job in the artifact store, laid out as an Azure ML parallel run step writes them under
 * `ExperimentRun/dcid.<job name>/logs/`, built from the local runner's job folder.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { LocalJobSpec, LocalJobStatus } from '../../../activities/backends/local/runner/job-spec';
import type { JournalRecord } from '../../../activities/backends/local/runner/result-store';
import type { BlobLocation, BlobStorage } from './blob-storage';

/**
 * The emulator runs every worker process on this machine, so all per-process logs sit under one node folder.
 * Real node ids are the compute nodes' names.
 */
export const NODE_ID = 'node_0';

/** Blob prefix of a job's logs in the artifact store's container. */
export function jobLogPrefix(jobName: string): string {
  return `ExperimentRun/dcid.${jobName}/logs`;
}

export type FinalJobStatus = 'Completed' | 'Failed' | 'Canceled';

export interface JobLogInput {
  jobName: string;
  status: FinalJobStatus;
  /** Why the job failed or was canceled, in one line. */
  reason?: string;
  /** The entry script's traceback, when the failure came from it. */
  traceback?: string;
  /** Set when the local runner ran the job. */
  runner?: { folder: string; spec: LocalJobSpec; status: LocalJobStatus };
  /** Where the append_row output was written, if anywhere. */
  outputUri?: string;
}

/** Writes the job's log files to `logs/` below `jobLogPrefix` in `container` and returns their paths below `logs/`. */
export async function uploadJobLogs(storage: BlobStorage, container: string, input: JobLogInput): Promise<string[]> {
  const files = new Map<string, string>();
  const journal = input.runner === undefined ? [] : readJournal(path.join(input.runner.folder, 'journal.jsonl'));

  files.set('readme.txt', readme());
  files.set('job_result.txt', jobResult(input));
  files.set('job_error.txt', jobErrors(input, journal));
  files.set('sys/job_report/processed_mini-batches.csv', miniBatchReport(journal));

  if (input.runner !== undefined) {
    const logsFolder = path.join(input.runner.folder, 'logs');
    const driverLog = path.join(logsFolder, 'driver.log');
    if (existsSync(driverLog)) files.set('sys/master_role.txt', readFileSync(driverLog, 'utf8'));
    for (const name of existsSync(logsFolder) ? readdirSync(logsFolder) : []) {
      const match = /^worker-(\d+)\.log$/.exec(name);
      if (match === null) continue;
      files.set(`user/stdout/${NODE_ID}/${processName(Number(match[1]))}.txt`, readFileSync(path.join(logsFolder, name), 'utf8'));
    }
  }

  const prefix = jobLogPrefix(input.jobName);
  for (const [relative, text] of files) {
    const location: BlobLocation = { container, blobPath: `${prefix}/${relative}` };
    await storage.uploadText(location, text);
  }
  return [...files.keys()];
}

/** Process names as the parallel runtime names them: `process000`, `process001`, ... */
export function processName(workerNumber: number): string {
  return `process${String(workerNumber).padStart(3, '0')}`;
}

function readme(): string {
  return [
    'Logs of an Azure ML parallel job, written by the amlbatch AML emulator.',
    '',
    'job_result.txt                          the job\'s outcome; on failure the reason and where to look. Read it first.',
    'job_error.txt                           errors raised by the entry script, per failed mini-batch.',
    'sys/job_report/processed_mini-batches.csv  one row per finished run of a mini-batch: result, items, rows, attempts, error.',
    'sys/master_role.txt                     the orchestrator\'s log (JSON lines).',
    `user/stdout/${NODE_ID}/<process>.txt       output of each worker process. The emulator's runner captures stdout`,
    '                                        and stderr of a process in one file, so stderr lines are there too.',
    '',
  ].join('\n');
}

function jobResult(input: JobLogInput): string {
  const lines: string[] = [];
  const progress = input.runner?.status.progress;
  if (input.status === 'Completed') {
    lines.push(`Job ${input.jobName} completed.`);
  } else if (input.status === 'Canceled') {
    lines.push(`Job ${input.jobName} was canceled.`, `Reason: ${input.reason ?? 'cancel requested'}`);
  } else {
    lines.push(`Job ${input.jobName} failed.`, `Reason: ${failureReason(input)}`);
    if (input.traceback !== undefined && input.traceback !== '') lines.push('', input.traceback.trimEnd());
  }
  if (progress !== undefined) {
    lines.push(
      '',
      `Mini-batches: ${progress.miniBatchesSucceeded} succeeded, ${progress.miniBatchesFailed} failed, ${progress.miniBatchesTotal} in total.`,
      `Items: ${progress.itemsSucceeded} succeeded, ${progress.itemsFailed} failed, ${progress.itemsTotal} in total.`,
    );
  }
  if (input.outputUri !== undefined) lines.push(`Output: ${input.outputUri}`);
  if (input.status === 'Failed') {
    lines.push(
      '',
      'Where to look: logs/job_error.txt for the entry script\'s errors, logs/sys/job_report/processed_mini-batches.csv ' +
        `for each mini-batch's result, logs/user/stdout/${NODE_ID}/<process>.txt for each worker process's output, ` +
        'logs/sys/master_role.txt for the orchestrator\'s log.',
    );
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Returns the one-line reason of a failure. A failure from an error threshold is stated as the parallel runtime
 * states it, from the runner's counts and the job's thresholds. Any other failure keeps the given reason.
 */
function failureReason(input: JobLogInput): string {
  const runner = input.runner;
  if (runner !== undefined) {
    const { progress } = runner.status;
    const { errorThreshold, miniBatchErrorThreshold } = runner.spec;
    if (errorThreshold >= 0 && progress.itemsFailed > errorThreshold) {
      return `error threshold exceeded: ${progress.itemsFailed} failed items > threshold ${errorThreshold}. ${input.reason ?? ''}`.trim();
    }
    if (miniBatchErrorThreshold >= 0 && progress.miniBatchesFailed > miniBatchErrorThreshold) {
      return `mini-batch error threshold exceeded: ${progress.miniBatchesFailed} failed mini-batches > threshold ${miniBatchErrorThreshold}. ${input.reason ?? ''}`.trim();
    }
  }
  return input.reason ?? 'unknown';
}

function jobErrors(input: JobLogInput, journal: JournalRecord[]): string {
  const sections: string[] = [];
  if (input.status === 'Failed' && input.traceback !== undefined && input.traceback !== '') {
    sections.push(`Job error: ${input.reason ?? ''}\n${input.traceback.trimEnd()}`);
  }
  for (const record of journal) {
    if (record.outcome !== 'failed' || record.failure === undefined) continue;
    const failure = record.failure;
    const run = record.repeat === true ? `The second run of mini-batch ${record.miniBatch}, which a test fault requested,` : `Mini-batch ${record.miniBatch}`;
    const heading = `${run} failed after ${record.attempts} attempt(s): ${failure.errorType ?? 'Error'}: ${failure.message}`;
    sections.push(failure.traceback === undefined ? heading : `${heading}\n${failure.traceback.trimEnd()}`);
  }
  if (sections.length === 0) return 'No errors were reported by the entry script.\n';
  return `${sections.join('\n\n')}\n`;
}

/**
 * Returns processed_mini-batches.csv: one row per finished run of a mini-batch. A mini-batch that a test fault ran
 * a second time has a second row, as a mini-batch that Azure ML processes twice would.
 */
function miniBatchReport(journal: JournalRecord[]): string {
  const rows = ['mini_batch,result,items,rows,attempts,error_type,error_message'];
  for (const record of journal) {
    rows.push(
      [
        record.miniBatch,
        record.outcome === 'succeeded' ? 'success' : 'failure',
        record.items,
        record.rows,
        record.attempts,
        record.failure?.errorType ?? '',
        record.failure?.message ?? '',
      ]
        .map((cell) => csvCell(String(cell)))
        .join(','),
    );
  }
  return `${rows.join('\n')}\n`;
}

function csvCell(value: string): string {
  return /[",\n\r]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** Reads the runner's journal; a torn last line, from a driver killed mid-write, is skipped. */
function readJournal(file: string): JournalRecord[] {
  if (!existsSync(file)) return [];
  const records: JournalRecord[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    try {
      records.push(JSON.parse(line) as JournalRecord);
    } catch {
      continue;
    }
  }
  return records.sort((a, b) => a.miniBatch - b.miniBatch);
}
