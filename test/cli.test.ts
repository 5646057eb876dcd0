import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { freePort } from '../common/dev-server';
import { compiledModulePath, projectRoot } from '../common/project-paths';
import { SAMPLE_FOLDER, createLocalHarness, readRows } from './support/local-batch';
import { connectToSharedDevServer } from './support/temporal-env';

// The `amlbatch` CLI as users run it: the compiled program in a child process, against the shared dev server.

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

function runCli(args: string[], environment: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [compiledModulePath('client/cli'), ...args],
      { env: { ...process.env, ...environment }, timeout: 120_000 },
      (error, stdout, stderr) => {
        let code = 0;
        if (error) code = typeof error.code === 'number' ? error.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

let env: TestWorkflowEnvironment;

beforeAll(async () => {
  env = await connectToSharedDevServer();
});

afterAll(async () => {
  await env?.teardown();
});

describe('amlbatch CLI', () => {
  test('unreachable server gives a clear message', async () => {
    const port = await freePort();

    const result = await runCli(['status', 'any-id'], { TEMPORAL_ADDRESS: `127.0.0.1:${port}` });

    expect(result.code).toBe(3);
    expect(result.stderr).toContain(`cannot reach the Temporal server at 127.0.0.1:${port}`);
    expect(result.stderr).toContain('TEMPORAL_ADDRESS');
  });

  test('unknown workflow id gives a clear message', async () => {
    const result = await runCli(['status', 'no-such-batch-id']);

    expect(result.code).toBe(2);
    expect(result.stderr).toContain('no batch with workflow id "no-such-batch-id" in namespace "default"');
  });

  test('missing folder is rejected before anything starts', async () => {
    const folder = path.join(os.tmpdir(), `amlbatch-nowhere-${Date.now()}`);

    const result = await runCli(['score', folder]);

    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`input folder ${folder} does not exist`);
  });

  test('non-JSON input file is rejected', async () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'amlbatch-input-')), 'input.json');
    writeFileSync(file, '{"inputFolder": ');

    const result = await runCli(['score', '--input-file', file]);

    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`--input-file ${file} is not valid JSON`);
  });

  test('invalid input field is rejected with its name', async () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'amlbatch-input-')), 'input.json');
    writeFileSync(file, JSON.stringify({ inputFolder: SAMPLE_FOLDER, outputAction: 'append' }));

    const result = await runCli(['score', '--input-file', file]);

    expect(result.code).toBe(2);
    expect(result.stderr).toContain('outputAction = "append" is not allowed; expected one of "append_row", "summary_only"');
  });

  test('score, status, results and list work on one batch', async () => {
    const harness = await createLocalHarness(env);
    const folder = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-cli-'));
    const sampleFiles = readdirSync(path.join(SAMPLE_FOLDER, '3')).slice(0, 5);
    for (const file of sampleFiles) copyFileSync(path.join(SAMPLE_FOLDER, '3', file), path.join(folder, `three, "${file}"`));
    const cliEnvironment = { AMLBATCH_TASK_QUEUE: harness.config.taskQueue };
    const workflowId = `cli-${Date.now()}`;

    const scored = await harness.worker.runUntil(
      runCli(['score', folder, '--workflow-id', workflowId, '--wait', '--mini-batch-size', '2'], cliEnvironment),
    );
    expect(scored.stderr).not.toContain('amlbatch:');
    expect(scored.code).toBe(0);
    expect(scored.stdout).toContain(`Started batch ${workflowId}`);
    expect(scored.stdout).toContain(`Temporal UI: http://localhost:8233/namespaces/default/workflows/${workflowId}`);
    expect(scored.stdout).toContain('"itemsScored": 5');

    const status = await runCli(['status', workflowId]);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain(`Batch ${workflowId}: COMPLETED`);

    const printed = await runCli(['results', workflowId]);
    expect(printed.code).toBe(0);
    const printedRows = printed.stdout.trim().split('\n').map((line) => JSON.parse(line) as { path: string });
    expect(printedRows.map((row) => row.path).sort()).toEqual(sampleFiles.map((file) => `three, "${file}"`).sort());

    const csvFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'amlbatch-csv-')), 'rows.csv');
    const exported = await runCli(['results', workflowId, '--format', 'csv', '--output', csvFile]);
    expect(exported.code).toBe(0);
    const csvLines = readFileSync(csvFile, 'utf8').trim().split('\n');
    expect(csvLines[0]).toBe('path,label,confidence');
    expect(csvLines).toHaveLength(6);
    expect(csvLines[1]).toMatch(/^"three, ""[^"]+""",3,/);

    const again = await runCli(['results', workflowId, '--format', 'csv', '--output', csvFile]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`${csvFile} already exists`);

    const failures = await runCli(['failures', workflowId]);
    expect(failures.code).toBe(0);
    expect(failures.stdout).toBe('');
    expect(failures.stderr).toContain('0 failed items');

    const reportFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'amlbatch-report-')), 'batch.html');
    const report = await runCli(['report', workflowId, '--output', reportFile]);
    expect(report.code).toBe(0);
    expect(report.stdout).toContain(`Wrote ${reportFile}`);
    const html = readFileSync(reportFile, 'utf8');
    expect(html).toContain('<!DOCTYPE html>');
    expect(html).toContain(workflowId);

    const listed = await runCli(['list', '--limit', '100']);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain(`${workflowId}\tCOMPLETED`);

    const resultsFile = JSON.parse((await runCli(['results', workflowId, '--summary'])).stdout).resultsFile as string;
    expect(readRows(resultsFile)).toHaveLength(5);

    const rescore = await runCli(['rescore', workflowId]);
    expect(rescore.code).toBe(0);
    expect(rescore.stdout).toContain(`Batch ${workflowId} has no failed items; nothing to rescore`);
  });

  test.each([
    [['score', '.', '--follow-up-rounds', '-1'], `option '--follow-up-rounds <n>' argument '-1' is invalid. expected a whole number of 0 or more`],
    [['score', '.', '--follow-up-rounds', 'abc'], `option '--follow-up-rounds <n>' argument 'abc' is invalid`],
    [['score', '.', '--follow-up-rounds', '2.5'], `option '--follow-up-rounds <n>' argument '2.5' is invalid`],
    [['score', '.', '--mini-batch-size', '0'], `option '--mini-batch-size <n>' argument '0' is invalid. expected a whole number of 1 or more`],
    [['rescore', 'any-id', '--follow-up-rounds', '-1'], `option '--follow-up-rounds <n>' argument '-1' is invalid`],
    [['retry', 'any-id', '--set', 'no-equals-sign'], `option '--set <field=value>' argument 'no-equals-sign' is invalid`],
    [['results', 'any-id', '--format', 'xml'], `option '--format <format>' argument 'xml' is invalid. Allowed choices are jsonl, csv.`],
    [['score', '.', '--no-such-flag'], `unknown option '--no-such-flag'`],
    [['results'], `missing required argument 'workflow-id'`],
    [['no-such-command'], `unknown command 'no-such-command'`],
    [[], 'Usage: amlbatch [options] [command]'],
  ])('usage error %j exits 2', async (args, message) => {
    const result = await runCli(args);

    expect(result.stderr).toContain(message);
    expect(result.stderr).not.toContain('    at ');
    expect(result.code).toBe(2);
  });

  test.each([[['--help']], [['score', '--help']], [['help', 'results']], [['--version']], [['-V']]])('%j exits 0', async (args) => {
    const result = await runCli(args);

    expect(result.stderr).toBe('');
    expect(result.stdout).not.toBe('');
    expect(result.code).toBe(0);
  });

  test('--version prints the package version', async () => {
    const { version } = JSON.parse(readFileSync(path.join(projectRoot(), 'package.json'), 'utf8')) as { version: string };

    const result = await runCli(['--version']);

    expect(result.stdout).toBe(`${version}\n`);
  });

  test('rescore of an unknown batch is a usage error', async () => {
    const result = await runCli(['rescore', 'no-such-batch-id']);

    expect(result.code).toBe(2);
    expect(result.stderr).toContain('no batch with workflow id "no-such-batch-id"');
  });
});
