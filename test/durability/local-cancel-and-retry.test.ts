import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CancelledFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { compiledModulePath } from '../../common/project-paths';
import { statusQuery } from '../../workflows/messages';
import type { BatchSummary } from '../../workflows/summary';
import { SAMPLE_FOLDER, createLocalHarness, readRows } from '../support/local-batch';
import { connectToSharedDevServer, uniqueTaskQueue } from '../support/temporal-env';
import { failureOf, waitForStatus } from './helpers';

// Cancel and operator retry end to end: the compiled `amlbatch` CLI in a child process, the shared dev server, a
// real worker with the local backend, and real Python processes running an entry script of the test's own.

let env: TestWorkflowEnvironment;

beforeAll(async () => {
  env = await connectToSharedDevServer();
});


afterAll(async () => {
  await env?.teardown();
});

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

function runCli(args: string[], taskQueue = 'amlbatch-durable-tests'): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [compiledModulePath('client/cli'), ...args],
      { env: { ...process.env, AMLBATCH_TASK_QUEUE: taskQueue }, timeout: 120_000 },
      (error, stdout, stderr) => {
        let code = 0;
        if (error) code = typeof error.code === 'number' ? error.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Copies `count` sample images into a new folder and returns it. */
function imageFolder(count: number): string {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-durable-'));
  const images = readdirSync(SAMPLE_FOLDER, { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile());
  for (const entry of images.slice(0, count)) copyFileSync(path.join(entry.parentPath, entry.name), path.join(folder, entry.name));
  return folder;
}

/** Writes a slow entry script: each process records its pid in `--pid_dir`, and each run() call takes a second. */
function slowCode(): { codeDirectory: string; pidFolder: string } {
  const codeDirectory = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-slow-code-'));
  const pidFolder = path.join(codeDirectory, 'pids');
  mkdirSync(pidFolder);
  writeFileSync(
    path.join(codeDirectory, 'score.py'),
    [
      'import os, sys, time',
      '',
      'def init():',
      '    pid_dir = sys.argv[sys.argv.index("--pid_dir") + 1]',
      '    open(os.path.join(pid_dir, str(os.getpid())), "w").close()',
      '',
      'def run(mini_batch):',
      '    time.sleep(1)',
      '    return [{"path": os.path.basename(p)} for p in mini_batch]',
      '',
    ].join('\n'),
  );
  return { codeDirectory, pidFolder };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return !/^\S+ \(.*\) [ZX]/.test(stat);
}

/** Waits until none of `pids` runs, or a minute has passed; returns those still running. */
async function survivors(pids: number[]): Promise<number[]> {
  for (let attempt = 0; attempt < 300; attempt += 1) {
    const running = pids.filter(isAlive);
    if (running.length === 0) return running;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return pids.filter(isAlive);
}

describe('cancel and retry from the CLI', () => {
  test('CLI cancel stops job and processes', async () => {
    const harness = await createLocalHarness(env);
    const { codeDirectory, pidFolder } = slowCode();
    const inputFolder = imageFolder(20);
    const workflowId = uniqueTaskQueue('cancel');

    const { cli, failure, status, jobFolder } = await harness.worker.runUntil(async () => {
      const handle = await env.client.workflow.start('batchScoring', {
        taskQueue: harness.config.taskQueue,
        workflowId,
        args: [{ inputFolder, codeDirectory, programArguments: ['--pid_dir', pidFolder], miniBatchSize: 1, processCount: 2 }],
      });
      const running = await waitForStatus(handle, (batch) => batch.currentStage === 'waitForJob' && readdirSync(pidFolder).length === 2, 'two running Python processes');
      const result = await runCli(['cancel', workflowId], harness.config.taskQueue);
      return {
        cli: result,
        failure: await failureOf(handle.result()),
        status: await handle.query(statusQuery),
        jobFolder: path.join(harness.workspaceDir, 'jobs', running.jobName!),
      };
    });

    expect(cli.code).toBe(0);
    expect(cli.stdout).toContain(`Requested cancellation of batch ${workflowId}`);
    expect(failure.cause).toBeInstanceOf(CancelledFailure);
    const jobStatus = JSON.parse(readFileSync(path.join(jobFolder, 'status.json'), 'utf8')) as { state: string; driverPid?: number };
    expect(jobStatus.state).toBe('Canceled');
    const pids = readdirSync(pidFolder).map(Number);
    expect(pids).toHaveLength(2);
    expect(await survivors([...pids, ...(jobStatus.driverPid ? [jobStatus.driverPid] : [])])).toEqual([]);
    expect(status.state).toBe('cancelled');
    expect(status.compensations.map((step) => [step.action, step.state])).toEqual([
      ['cancelScoringJob', 'completed'],
      ['deleteDatasetVersion', 'skipped'],
      ['deleteDatastore', 'skipped'],
    ]);
    expect(status.stages.find((stage) => stage.stage === 'waitForJob')?.state).toBe('cancelled');
    expect(existsSync(path.join(harness.workspaceDir, 'results'))).toBe(false);
  });

  test('CLI retry with corrected secret', async () => {
    const harness = await createLocalHarness(env);
    const inputFolder = imageFolder(12);
    const workflowId = uniqueTaskQueue('retry');

    const { statusOutput, retryOutput, watchOutput, summary } = await harness.worker.runUntil(async () => {
      const handle = await env.client.workflow.start('batchScoring', {
        taskQueue: harness.config.taskQueue,
        workflowId,
        args: [{ inputFolder, secretNames: ['no-such-secret'], processCount: 1 }],
      });
      await waitForStatus(handle, (batch) => batch.pendingFailure !== undefined, 'the vault failure waiting for an operator');
      const taskQueue = harness.config.taskQueue;
      const statusResult = await runCli(['status', workflowId], taskQueue);
      const retryResult = await runCli(['retry', workflowId, '--set', 'secretNames=["model-signing-key"]'], taskQueue);
      const watchResult = await runCli(['watch', workflowId, '--interval', '1'], taskQueue);
      return { statusOutput: statusResult, retryOutput: retryResult, watchOutput: watchResult, summary: (await handle.result()) as BatchSummary };
    });

    expect(statusOutput.stdout).toContain('stage checkVaultAccess failed (NotFound): secret "no-such-secret" not found');
    expect(statusOutput.stdout).toContain(`amlbatch retry ${workflowId} [--set field=value ...]`);
    expect(retryOutput.code).toBe(0);
    expect(retryOutput.stdout).toContain('stage checkVaultAccess runs again with secretNames corrected');
    expect(watchOutput.code).toBe(0);
    expect(watchOutput.stdout).toContain('stage collectResults completed');
    expect(summary.outcome).toBe('scored');
    expect(summary.stages.find((stage) => stage.stage === 'checkVaultAccess')?.operatorRetries).toBe(1);
    expect(readRows(summary.resultsFile!)).toHaveLength(12);
  });

  test('retry of unknown batch rejected', async () => {
    const result = await runCli(['retry', 'no-such-batch-id']);

    expect(result.code).toBe(2);
    expect(result.stderr).toContain('no batch with workflow id "no-such-batch-id"');
  });
});
