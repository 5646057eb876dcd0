#!/usr/bin/env node
import { existsSync, readFileSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { loadConfig } from '../common/config';
import { projectRoot } from '../common/project-paths';
import { BACKENDS, OUTPUT_ACTIONS, InvalidBatchInputError, validateBatchInput, type BatchScoringInput } from '../workflows/input';
import {
  BatchClient,
  BatchNotFoundError,
  NoPendingFailureError,
  RescoreRejectedError,
  TemporalUnreachableError,
  type BatchDescription,
} from './batch-client';
import type { LedgerCounts } from '../activities/ledger/build-ledger';
import { failureReasonLabel, readLedger } from '../activities/ledger/ledger-format';
import type { BatchSummary } from '../workflows/summary';
import { exportLedgerRows, exportRows, type ExportFormat } from './export-rows';
import { writeBatchReport } from './report-html';
import { renderProgressLine } from './progress';

/** Exit codes: 1 for a failed batch or command, 2 for bad usage or input, 3 when Temporal is unreachable. */
const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
const EXIT_UNREACHABLE = 3;

// A closed standard output, as in `amlbatch results <id> | head -1`, ends the command quietly, because nothing more
// can be delivered. Node.js reports it as an EPIPE 'error' event on the stream, which would otherwise crash the
// command with a stack trace. The exit code is the one set so far: 0 unless the command had already failed.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit();
  console.error(`amlbatch: writing to standard output failed: ${error.message}`);
  process.exit(EXIT_FAILED);
});
// A failed write to standard error, such as to a closed pipe (`amlbatch … 2>&1 | head -1`), loses the remaining
// messages but not the exit code, so the command goes on. Node.js emits the error once, and later writes to the
// destroyed stream fail without an event.
process.stderr.on('error', () => undefined);

const program = new Command('amlbatch')
  .description('Score folders of files with a Python entry script as durable Temporal batches')
  .version(packageVersion(), '-V, --version', 'print the amlbatch version')
  .showHelpAfterError()
  // Commander exits with code 1 after a usage error. This makes it throw a CommanderError instead, which the
  // handler at the end of this file turns into code 2. Commands created below inherit the setting.
  .exitOverride();

program
  .command('score')
  .description('start a batch that scores every file under <folder>')
  .argument('[folder]', 'folder of files to score (resolved to an absolute path)')
  .option('--input-file <file>', 'JSON file with the whole workflow input; flags given as well override its fields')
  .option('--workflow-id <id>', 'workflow id for the batch (default: batch-<UTC time>-<random>)')
  .option('--wait', 'show a progress bar until the batch ends, then print its summary')
  .addOption(new Option('--backend <name>', 'where the batch runs').choices(BACKENDS))
  .option('--code-directory <folder>', 'folder with the entry script (default: the bundled sample)')
  .option('--entry-script <file>', 'entry script relative to --code-directory (default: score.py)')
  .option('--program-argument <arg>', 'argument for the entry script; repeat for several', collect)
  .option('--mini-batch-size <n>', 'files per run() call (default: 10)', positiveInteger)
  .option('--process-count <n>', 'Python worker processes (default: CPU cores)', positiveInteger)
  .option('--run-invocation-timeout <seconds>', 'seconds one run() call may take (default: 60)', positiveInteger)
  .option('--max-retries <n>', 'extra attempts for a failed mini-batch (default: 2)', wholeNumber)
  .option('--error-threshold <n>', 'failed items above which the job fails; -1 ignores (default: -1)', threshold)
  .option('--mini-batch-error-threshold <n>', 'failed mini-batches above which the job fails; -1 ignores (default: -1)', threshold)
  .addOption(new Option('--output-action <action>', 'how run() results are written').choices(OUTPUT_ACTIONS))
  .option('--append-row-file-name <name>', 'append_row output file name (default: parallel_run_step.txt)')
  .option('--secret-name <name>', 'secret the entry script reads; repeat for several', collect)
  .option('--results-folder <folder>', 'folder for the collected rows (default: in the local workspace)')
  .option('--follow-up-rounds <n>', 'follow-up jobs over only the items a job left failed or without a result (default: 0)', wholeNumber)
  .action(async (folder: string | undefined, options: ScoreOptions) => {
    const input = await buildInput(folder, options);
    await withClient(async (client) => {
      const { workflowId, uiLink } = await client.start(input, options.workflowId);
      console.log(`Started batch ${workflowId}`);
      console.log(`Temporal UI: ${uiLink}`);
      if (!options.wait) return;
      await showProgressUntilDone(client, workflowId);
      const summary = await client.result(workflowId);
      console.log(JSON.stringify(summary, null, 2));
    });
  });

program
  .command('status')
  .description("show a batch's state, each stage's state and timing, the job's progress and a failure waiting for an operator")
  .argument('<workflow-id>')
  .option('--json', 'print the status as JSON')
  .action(async (workflowId: string, options: { json?: boolean }) => {
    await withClient(async (client) => {
      const description = await client.describe(workflowId);
      console.log(options.json ? JSON.stringify(description, null, 2) : formatDescription(description, client.uiLink(workflowId)));
    });
  });

program
  .command('watch')
  .description('follow a batch until it ends: stage changes, job progress, failures waiting for an operator, undo steps')
  .argument('<workflow-id>')
  .option('--interval <seconds>', 'seconds between two looks at the batch (default: 2)', positiveInteger, 2)
  .action(async (workflowId: string, options: { interval: number }) => {
    await withClient(async (client) => {
      const description = await watchBatch(client, workflowId, options.interval * 1000);
      if (description.status === 'COMPLETED') {
        console.log(JSON.stringify(await client.result(workflowId), null, 2));
        return;
      }
      console.log(`Batch ${workflowId} ended ${description.status}${description.failure ? `: ${description.failure}` : ''}`);
      process.exitCode = EXIT_FAILED;
    });
  });

program
  .command('retry')
  .description('run the failed stage of a batch that waits for an operator again, optionally with corrected input fields')
  .argument('<workflow-id>')
  .option(
    '--set <field=value>',
    'corrected input field; the value is JSON when it parses as JSON, else a string; null restores the default; ' +
      'dotted names reach nested fields (azure.datastore.allowUpdate=true); repeat for several',
    collectSetting,
  )
  .action(async (workflowId: string, options: { set?: Record<string, unknown> }) => {
    await withClient(async (client) => {
      const backend = (await client.describe(workflowId)).batch?.backend ?? 'local';
      const corrections = options.set ? resolveLocalPaths(options.set, backend) : undefined;
      const pending = await client.retry(workflowId, corrections);
      const changed = corrections ? ` with ${Object.keys(corrections).join(', ')} corrected` : '';
      console.log(`Sent retry to batch ${workflowId}: stage ${pending.stage} runs again${changed}`);
      if (pending.retrySubmitsNewJob) console.log('The job failed, so the retry submits a new job.');
    });
  });

program
  .command('abort')
  .description('give up on the failed stage of a batch that waits for an operator: it undoes what it created and fails')
  .argument('<workflow-id>')
  .option('--reason <text>', 'why, for the failure details and the worker log')
  .action(async (workflowId: string, options: { reason?: string }) => {
    await withClient(async (client) => {
      const pending = await client.abort(workflowId, options.reason);
      console.log(`Sent abort to batch ${workflowId}: stage ${pending.stage} fails for good; the batch now undoes what it created`);
    });
  });

program
  .command('cancel')
  .description('cancel a batch: its job is stopped, what it created is undone, and it ends as cancelled')
  .argument('<workflow-id>')
  .option('--wait', 'wait until the batch has ended and print how')
  .action(async (workflowId: string, options: { wait?: boolean }) => {
    await withClient(async (client) => {
      await client.cancel(workflowId);
      console.log(`Requested cancellation of batch ${workflowId}`);
      if (!options.wait) return;
      const description = await watchBatch(client, workflowId, 1000);
      console.log(formatDescription(description, client.uiLink(workflowId)));
      if (description.status !== 'CANCELLED') process.exitCode = EXIT_FAILED;
    });
  });

program
  .command('rescore')
  .description("score again only the items a completed batch's item ledger records as failed, into the same results")
  .argument('<workflow-id>')
  .option('--follow-up-rounds <n>', 'follow-up jobs for items that fail again (default: the batch\'s own setting)', wholeNumber)
  .option('--wait', 'show a progress bar until the rescore ends, then print its summary')
  .action(async (workflowId: string, options: { followUpRounds?: number; wait?: boolean }) => {
    await withClient(async (client) => {
      const started = await client.rescore(workflowId, options.followUpRounds !== undefined ? { followUpRounds: options.followUpRounds } : {});
      if (!started) {
        console.log(`Batch ${workflowId} has no failed items; nothing to rescore`);
        return;
      }
      // The count is the batch's when it ended; a later rescore may have scored some of those items since.
      const count = started.failedItems === undefined ? '' : `, whose ledger listed ${started.failedItems} failed items when it ended`;
      console.log(`Started rescore ${started.workflowId} of batch ${workflowId}${count}`);
      console.log(`Temporal UI: ${started.uiLink}`);
      if (!options.wait) return;
      await showProgressUntilDone(client, started.workflowId);
      console.log(JSON.stringify(await client.result(started.workflowId), null, 2));
    });
  });

program
  .command('results')
  .description("print a finished batch's rows, one per item, or export them to a file")
  .argument('<workflow-id>')
  .addOption(new Option('--format <format>', 'output format').choices(['jsonl', 'csv']).default('jsonl'))
  .option('--output <file>', 'write to this file instead of standard output (an existing file is kept unless --force)')
  .option('--force', 'overwrite --output if it exists')
  .option(
    '--raw',
    'export the results file as it is: every row each job appended, so an item scored again by a follow-up round or a ' +
      'rescore has several rows, and rows of unknown files are included',
  )
  .option('--summary', 'print the batch summary instead of the rows')
  .action(async (workflowId: string, options: ResultsOptions) => {
    await withClient(async (client) => {
      const summary = await client.result(workflowId);
      if (options.summary) {
        console.log(JSON.stringify(summary, null, 2));
        return;
      }
      await exportResults(workflowId, summary, options);
    });
  });

program
  .command('failures')
  .description("list every failed item of a finished batch, with its reason, from the batch's item ledger")
  .argument('<workflow-id>')
  .option('--json', 'print one JSON record per failed item')
  .addHelpText(
    'after',
    '\nWithout --json, each failed item is one tab-separated line: path, reason, message. Backslashes and control ' +
      'characters such as line breaks and tabs are escaped in JSON notation (\\\\, \\n, \\t, \\u001b).',
  )
  .action(async (workflowId: string, options: { json?: boolean }) => {
    await withClient(async (client) => {
      const ledgerFile = requireLedger(workflowId, await client.result(workflowId));
      let failed = 0;
      for await (const record of readLedger(ledgerFile)) {
        if (record.state !== 'failed') continue;
        failed += 1;
        if (options.json) {
          console.log(JSON.stringify({ path: record.path, reason: record.reason }));
          continue;
        }
        const reason = record.reason ? failureReasonLabel(record.reason) : 'no_result';
        console.log([record.path, reason, record.reason?.message ?? ''].map(escapeControlCharacters).join('\t'));
      }
      if (!options.json) console.error(`${failed} failed items`);
    });
  });

program
  .command('report')
  .description('write one self-contained HTML page about a finished batch: stages, outcomes, failures and labels')
  .argument('<workflow-id>')
  .option('--output <file>', 'HTML file to write (default: report.html in the batch results folder)')
  .action(async (workflowId: string, options: { output?: string }) => {
    await withClient(async (client) => {
      const summary = await client.result(workflowId);
      const ledgerFile = requireLedger(workflowId, summary);
      const countsFile = path.join(path.dirname(ledgerFile), 'ledger-counts.json');
      const counts = JSON.parse(await readFile(countsFile, 'utf8')) as LedgerCounts;
      const output = path.resolve(process.env.INIT_CWD ?? process.cwd(), options.output ?? path.join(path.dirname(ledgerFile), 'report.html'));
      await writeBatchReport(output, { summary, progress: [], counts, ledgerPath: ledgerFile });
      console.log(`Wrote ${output}`);
    });
  });

program
  .command('list')
  .description('list recent batches')
  .option('--limit <n>', 'how many batches to show', positiveInteger, 20)
  .action(async (options: { limit: number }) => {
    await withClient(async (client) => {
      const entries = await client.list(options.limit);
      if (entries.length === 0) {
        console.log('No batches found.');
        return;
      }
      for (const entry of entries) {
        console.log(`${escapeControlCharacters(entry.workflowId)}\t${entry.status}\t${entry.startTime.toISOString()}`);
      }
    });
  });

interface ScoreOptions {
  inputFile?: string;
  workflowId?: string;
  wait?: boolean;
  backend?: BatchScoringInput['backend'];
  codeDirectory?: string;
  entryScript?: string;
  programArgument?: string[];
  miniBatchSize?: number;
  processCount?: number;
  runInvocationTimeout?: number;
  maxRetries?: number;
  errorThreshold?: number;
  miniBatchErrorThreshold?: number;
  outputAction?: BatchScoringInput['outputAction'];
  appendRowFileName?: string;
  secretName?: string[];
  resultsFolder?: string;
  followUpRounds?: number;
}

interface ResultsOptions {
  format: ExportFormat;
  output?: string;
  force?: boolean;
  raw?: boolean;
  summary?: boolean;
}

/** Thrown for mistakes the user can fix in the command line or input file; exits with code 2. */
class UsageError extends Error {}

/**
 * Exports a finished batch's rows: one per item from its item ledger, or the results file as it is with `--raw` or
 * when the batch has no ledger on this machine.
 */
async function exportResults(workflowId: string, summary: BatchSummary, options: ResultsOptions): Promise<void> {
  if (!summary.resultsFile) {
    throw new UsageError(
      summary.outcome === 'nothing_to_score'
        ? `batch ${workflowId} had nothing to score, so it has no rows`
        : `batch ${workflowId} ran with outputAction summary_only, so it has no rows; print its summary with amlbatch results ${workflowId} --summary`,
    );
  }
  const overwrite = options.force ?? false;
  const ledgerFile = summary.ledger?.ledgerFile;

  if (!options.raw && ledgerFile && existsSync(ledgerFile)) {
    const { rows, itemsWithoutRow } = await exportLedgerRows(ledgerFile, options.format, options.output, overwrite);
    if (options.output) console.error(`Wrote ${rows} rows, one per item, to ${options.output}`);
    if (itemsWithoutRow > 0) {
      const items = itemsWithoutRow === 1 ? '1 failed item has' : `${itemsWithoutRow} failed items have`;
      console.error(`${items} no row; amlbatch failures ${workflowId} lists them`);
    }
    return;
  }

  if (!existsSync(summary.resultsFile)) {
    throw new UsageError(
      `results file ${summary.resultsFile} is not on this machine; run the command where the worker runs or copy the file`,
    );
  }
  if (!options.raw && ledgerFile) {
    console.error(
      `amlbatch: ledger ${ledgerFile} is not on this machine, so the rows come from the results file as it is, ` +
        'where an item scored again has several rows; copy the ledger beside it for one row per item',
    );
  }
  const count = await exportRows(summary.resultsFile, options.format, options.output, overwrite);
  if (options.output) console.error(`Wrote ${count} rows to ${options.output}`);
}

/** Returns the ledger file of a finished batch, or a usage error saying why the batch has none here. */
function requireLedger(workflowId: string, summary: BatchSummary): string {
  if (summary.outcome === 'nothing_to_score') throw new UsageError(`batch ${workflowId} had nothing to score, so it has no items`);
  const ledgerFile = summary.ledger?.ledgerFile;
  if (!ledgerFile) throw new UsageError(`batch ${workflowId} has no item ledger; it ran before amlbatch built ledgers`);
  if (!existsSync(ledgerFile)) {
    throw new UsageError(`ledger ${ledgerFile} is not on this machine; run the command where the worker runs or copy the results folder`);
  }
  return ledgerFile;
}

/** Merges the input file and the flags into one workflow input, resolving local paths to absolute ones. */
async function buildInput(folder: string | undefined, options: ScoreOptions): Promise<BatchScoringInput> {
  let fromFile: Record<string, unknown> = {};
  if (options.inputFile) {
    const text = await readFile(options.inputFile, 'utf8').catch((error: Error) => {
      throw new UsageError(`cannot read --input-file ${options.inputFile}: ${error.message}`);
    });
    try {
      fromFile = JSON.parse(text) as Record<string, unknown>;
    } catch (error) {
      throw new UsageError(`--input-file ${options.inputFile} is not valid JSON: ${(error as Error).message}`);
    }
    if (fromFile === null || typeof fromFile !== 'object' || Array.isArray(fromFile)) {
      throw new UsageError(`--input-file ${options.inputFile} must hold one JSON object, such as {"inputFolder": "/data/images"}`);
    }
  }

  const flags: Partial<BatchScoringInput> = {
    ...(folder !== undefined ? { inputFolder: folder } : {}),
    ...(options.backend !== undefined ? { backend: options.backend } : {}),
    ...(options.codeDirectory !== undefined ? { codeDirectory: options.codeDirectory } : {}),
    ...(options.entryScript !== undefined ? { entryScript: options.entryScript } : {}),
    ...(options.programArgument !== undefined ? { programArguments: options.programArgument } : {}),
    ...(options.miniBatchSize !== undefined ? { miniBatchSize: options.miniBatchSize } : {}),
    ...(options.processCount !== undefined ? { processCount: options.processCount } : {}),
    ...(options.runInvocationTimeout !== undefined ? { runInvocationTimeout: options.runInvocationTimeout } : {}),
    ...(options.maxRetries !== undefined ? { maxRetries: options.maxRetries } : {}),
    ...(options.errorThreshold !== undefined ? { errorThreshold: options.errorThreshold } : {}),
    ...(options.miniBatchErrorThreshold !== undefined ? { miniBatchErrorThreshold: options.miniBatchErrorThreshold } : {}),
    ...(options.outputAction !== undefined ? { outputAction: options.outputAction } : {}),
    ...(options.appendRowFileName !== undefined ? { appendRowFileName: options.appendRowFileName } : {}),
    ...(options.secretName !== undefined ? { secretNames: options.secretName } : {}),
    ...(options.resultsFolder !== undefined ? { resultsFolder: options.resultsFolder } : {}),
    ...(options.followUpRounds !== undefined ? { followUpRounds: options.followUpRounds } : {}),
  };
  const input = { ...fromFile, ...flags } as BatchScoringInput;
  if (typeof input.inputFolder !== 'string' || input.inputFolder === '') {
    throw new UsageError('no folder to score: give it as `amlbatch score <folder>` or as "inputFolder" in --input-file');
  }

  if ((input.backend ?? 'local') === 'local') {
    // `npm run amlbatch -- …` runs in the project folder; INIT_CWD is the folder the user typed the command in.
    const base = process.env.INIT_CWD ?? process.cwd();
    for (const field of ['inputFolder', 'codeDirectory', 'resultsFolder'] as const) {
      const value = input[field];
      if (typeof value === 'string') input[field] = path.resolve(base, value);
    }
    const folderPath = input.inputFolder;
    if (!existsSync(folderPath)) {
      throw new UsageError(`input folder ${folderPath} does not exist; check the path`);
    }
    if (!statSync(folderPath).isDirectory()) {
      throw new UsageError(`${folderPath} is a file, not a folder; give the folder that contains the files to score`);
    }
  }
  validateBatchInput(input);
  return input;
}

async function showProgressUntilDone(client: BatchClient, workflowId: string): Promise<void> {
  const interactive = process.stderr.isTTY === true;
  let lastLine = '';
  for (;;) {
    const description = await client.describe(workflowId);
    if (description.status !== 'RUNNING') break;
    const line = renderProgressLine(description);
    if (interactive) {
      process.stderr.write(`\r${line.padEnd(lastLine.length)}`);
    } else if (line !== lastLine) {
      process.stderr.write(`${line}\n`);
    }
    lastLine = line;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  if (interactive && lastLine) process.stderr.write('\n');
}

function formatDescription(description: BatchDescription, uiLink: string): string {
  const batch = description.batch;
  const state = batch ? ` (${batch.state.replace('_', ' ')})` : '';
  const lines = [`Batch ${description.workflowId}: ${description.status}${state}`, `Started: ${description.startTime.toISOString()}`];
  if (description.closeTime) lines.push(`Closed: ${description.closeTime.toISOString()}`);
  if (batch) {
    lines.push(`Current stage: ${batch.currentStage ?? '(none)'}`);
    for (const stage of batch.stages) {
      const duration = stage.durationMs !== undefined ? ` (${stage.durationMs} ms)` : '';
      const retried = stage.operatorRetries ? `, retried ${stage.operatorRetries}× by an operator` : '';
      lines.push(`  ${stage.stage.padEnd(18)} ${stage.state}${duration}${retried}${stage.error ? `: ${stage.error}` : ''}`);
    }
    if (batch.dataset) lines.push(`Dataset: ${batch.dataset.name}:${batch.dataset.version} (${batch.dataset.created ? 'created by this batch' : 'existed before'})`);
    if (batch.itemsSelected !== undefined) {
      lines.push(`Selected: ${batch.itemsSelected} of ${batch.itemsTotal ?? '?'} items, those left failed by the earlier jobs`);
    }
  }
  if (description.job) lines.push(renderProgressLine(description));
  if (batch?.pendingFailure) lines.push(...formatPendingFailure(description.workflowId, batch.pendingFailure));
  if (batch && batch.compensations.length > 0) {
    lines.push('Undo steps:');
    for (const step of batch.compensations) lines.push(`  ${step.action.padEnd(20)} ${step.target}: ${step.state}${step.detail ? ` (${step.detail})` : ''}`);
  }
  if (description.failure) lines.push(`Failure: ${description.failure}`);
  lines.push(`Temporal UI: ${uiLink}`);
  return lines.join('\n');
}

function formatPendingFailure(workflowId: string, pending: NonNullable<NonNullable<BatchDescription['batch']>['pendingFailure']>): string[] {
  const lines = [
    `Waiting for an operator since ${pending.since}: stage ${pending.stage} failed (${pending.failureType}): ${pending.message}`,
    `  Fix the cause, then: amlbatch retry ${workflowId}${pending.retryFields.length > 0 ? ' [--set field=value ...]' : ''}`,
  ];
  if (pending.retryFields.length > 0) lines.push(`  Fields a retry may correct: ${pending.retryFields.join(', ')}`);
  if (pending.retrySubmitsNewJob) lines.push('  The job failed, so a retry submits a new job.');
  if (pending.rejectedRetry) lines.push(`  Last retry rejected at ${pending.rejectedRetry.at}: ${pending.rejectedRetry.message}`);
  lines.push(`  Or give up: amlbatch abort ${workflowId} [--reason text]. Without either, the batch fails at ${pending.deadline}.`);
  return lines;
}

/**
 * Prints what changes in a batch, one line per change, until it closes; returns its last description. Job progress
 * comes from the wait activity's heartbeat, which the query cannot carry without a history event per poll.
 */
async function watchBatch(client: BatchClient, workflowId: string, intervalMs: number): Promise<BatchDescription> {
  const printed = new Set<string>();
  const show = (line: string): void => {
    if (printed.has(line)) return;
    printed.add(line);
    console.log(line);
  };
  for (;;) {
    const description = await client.describe(workflowId);
    const batch = description.batch;
    if (batch) {
      for (const stage of batch.stages) {
        if (stage.state === 'pending' || stage.state === 'skipped') continue;
        const duration = stage.state !== 'running' && stage.durationMs !== undefined ? ` after ${stage.durationMs} ms` : '';
        show(`stage ${stage.stage} ${stage.state.replace('_', ' ')}${duration}${stage.operatorRetries ? ` (operator retry ${stage.operatorRetries})` : ''}`);
      }
      if (batch.pendingFailure) formatPendingFailure(workflowId, batch.pendingFailure).forEach(show);
      for (const step of batch.compensations) show(`undo ${step.action} ${step.target}: ${step.state}${step.detail ? ` (${step.detail})` : ''}`);
    }
    if (description.job) show(renderProgressLine(description));
    if (description.status !== 'RUNNING') return description;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Connects, runs one command and turns known errors into a message and an exit code instead of a stack trace. */
async function withClient(command: (client: BatchClient) => Promise<void>): Promise<void> {
  let client: BatchClient | undefined;
  try {
    client = await BatchClient.connect(loadConfig());
    await command(client);
  } catch (error) {
    process.exitCode = exitCodeFor(error);
    console.error(`amlbatch: ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    await client?.close();
  }
}

function exitCodeFor(error: unknown): number {
  if (error instanceof TemporalUnreachableError) return EXIT_UNREACHABLE;
  if (
    error instanceof UsageError ||
    error instanceof InvalidBatchInputError ||
    error instanceof BatchNotFoundError ||
    error instanceof NoPendingFailureError ||
    error instanceof RescoreRejectedError
  ) {
    return EXIT_USAGE;
  }
  return EXIT_FAILED;
}

/** Characters escaped in tab-separated output: backslash, control characters (C0, DEL, C1), U+2028 and U+2029. */
const ESCAPED_CHARACTERS = /[\\\p{Cc}\u2028\u2029]/gu;
const SHORT_ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' };

/**
 * Escapes backslashes and control characters in JSON notation (`\\`, `\n`, `\t`, `\u001b`), so a value with a line break
 * or tab stays inside its field of a tab-separated line, and escape sequences cannot reach the terminal.
 */
function escapeControlCharacters(text: string): string {
  return text.replace(ESCAPED_CHARACTERS, (char) => SHORT_ESCAPES[char] ?? `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Reads the version from the project's package.json, which the installed CLI runs from. */
function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(path.join(projectRoot(), 'package.json'), 'utf8')) as { version: string };
  return manifest.version;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Parses one `--set field=value` into the merge patch built so far; the value is JSON when it parses, else text. */
function collectSetting(setting: string, previous: Record<string, unknown> | undefined): Record<string, unknown> {
  const separator = setting.indexOf('=');
  const path = separator > 0 ? setting.slice(0, separator).split('.') : [];
  if (path.length === 0 || path.some((key) => key === '')) {
    throw new InvalidArgumentError(`expected field=value, e.g. errorThreshold=10 or azure.datastore.allowUpdate=true, got "${setting}"`);
  }
  const text = setting.slice(separator + 1);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = text;
  }

  const patch = { ...(previous ?? {}) };
  let target: Record<string, unknown> = patch;
  for (const key of path.slice(0, -1)) {
    const next = target[key];
    const copy = next !== null && typeof next === 'object' && !Array.isArray(next) ? { ...(next as Record<string, unknown>) } : {};
    target[key] = copy;
    target = copy;
  }
  target[path[path.length - 1]] = value;
  return patch;
}

/** Resolves corrected local folders against the folder the command was typed in, as `score` does. */
function resolveLocalPaths(corrections: Record<string, unknown>, backend: string): Record<string, unknown> {
  if ((corrections.backend ?? backend) !== 'local') return corrections;
  const base = process.env.INIT_CWD ?? process.cwd();
  const resolved = { ...corrections };
  for (const field of ['inputFolder', 'codeDirectory', 'resultsFolder']) {
    const value = resolved[field];
    if (typeof value === 'string') resolved[field] = path.resolve(base, value);
  }
  return resolved;
}

function parseWhole(value: string, min: number, what: string): number {
  if (!/^-?\d+$/.test(value) || Number(value) < min) throw new InvalidArgumentError(`expected ${what}, got "${value}"`);
  return Number(value);
}

function positiveInteger(value: string): number {
  return parseWhole(value, 1, 'a whole number of 1 or more');
}

function wholeNumber(value: string): number {
  return parseWhole(value, 0, 'a whole number of 0 or more');
}

function threshold(value: string): number {
  return parseWhole(value, -1, 'a whole number of 0 or more, or -1 to ignore failures');
}

program.parseAsync(process.argv).catch((error: unknown) => {
  if (error instanceof CommanderError) {
    // Commander has printed the help, the version or the usage error. Its exit code is 0 for help and version.
    process.exitCode = error.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    return;
  }
  console.error(`amlbatch: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = exitCodeFor(error);
});
