#!/usr/bin/env node
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { loadConfig } from '../common/config';
import { BACKENDS, OUTPUT_ACTIONS, InvalidBatchInputError, validateBatchInput, type BatchScoringInput } from '../workflows/input';
import { BatchClient, BatchNotFoundError, TemporalUnreachableError, type BatchDescription } from './batch-client';
import { exportRows, type ExportFormat } from './export-rows';
import { renderProgressLine } from './progress';

/** Exit codes: 1 for a failed batch or command, 2 for bad usage or input, 3 when Temporal is unreachable. */
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
const EXIT_UNREACHABLE = 3;

const program = new Command('amlbatch')
  .description('Score folders of files with a Python entry script as durable Temporal batches')
  .showHelpAfterError();

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
  .description("show a batch's state, current stage and job progress")
  .argument('<workflow-id>')
  .option('--json', 'print the status as JSON')
  .action(async (workflowId: string, options: { json?: boolean }) => {
    await withClient(async (client) => {
      const description = await client.describe(workflowId);
      console.log(options.json ? JSON.stringify(description, null, 2) : formatDescription(description, client.uiLink(workflowId)));
    });
  });

program
  .command('results')
  .description("print a finished batch's rows, or export them to a file")
  .argument('<workflow-id>')
  .addOption(new Option('--format <format>', 'output format').choices(['jsonl', 'csv']).default('jsonl'))
  .option('--output <file>', 'write to this file instead of standard output (an existing file is kept unless --force)')
  .option('--force', 'overwrite --output if it exists')
  .option('--summary', 'print the batch summary instead of the rows')
  .action(async (workflowId: string, options: { format: ExportFormat; output?: string; force?: boolean; summary?: boolean }) => {
    await withClient(async (client) => {
      const summary = await client.result(workflowId);
      if (options.summary) {
        console.log(JSON.stringify(summary, null, 2));
        return;
      }
      if (!summary.resultsFile) {
        throw new UsageError(
          summary.outcome === 'nothing_to_score'
            ? `batch ${workflowId} had nothing to score, so it has no rows`
            : `batch ${workflowId} ran with outputAction summary_only, so it has no rows; see --summary`,
        );
      }
      if (!existsSync(summary.resultsFile)) {
        throw new UsageError(
          `results file ${summary.resultsFile} is not on this machine; run the command where the worker runs or copy the file`,
        );
      }
      const count = await exportRows(summary.resultsFile, options.format, options.output, options.force ?? false);
      if (options.output) console.error(`Wrote ${count} rows to ${options.output}`);
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
        console.log(`${entry.workflowId}\t${entry.status}\t${entry.startTime.toISOString()}`);
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
}

/** Thrown for mistakes the user can fix in the command line or input file; exits with code 2. */
class UsageError extends Error {}

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
      throw new UsageError(`${folderPath} is a file, not a folder; give the folder that holds the files to score`);
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
  const lines = [`Batch ${description.workflowId}: ${description.status}`, `Started: ${description.startTime.toISOString()}`];
  if (description.closeTime) lines.push(`Closed: ${description.closeTime.toISOString()}`);
  if (description.batch) {
    lines.push(`Current stage: ${description.batch.currentStage ?? '(none)'}`);
    for (const stage of description.batch.stages) {
      const duration = stage.durationMs !== undefined ? ` (${stage.durationMs} ms)` : '';
      lines.push(`  ${stage.stage.padEnd(18)} ${stage.state}${duration}${stage.error ? `: ${stage.error}` : ''}`);
    }
  }
  if (description.job) lines.push(renderProgressLine(description));
  if (description.failure) lines.push(`Failure: ${description.failure}`);
  lines.push(`Temporal UI: ${uiLink}`);
  return lines.join('\n');
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
  if (error instanceof UsageError || error instanceof InvalidBatchInputError || error instanceof BatchNotFoundError) return EXIT_USAGE;
  return EXIT_FAILED;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
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
  console.error(`amlbatch: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = exitCodeFor(error);
});
