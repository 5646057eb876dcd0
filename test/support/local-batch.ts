import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { loadConfig, type AmlbatchConfig } from '../../common/config';
import { projectRoot } from '../../common/project-paths';
import type { BackendRegistry } from '../../activities/backends/registry';
import { createBatchWorker } from '../../worker/create-worker';
import type { BatchSummary } from '../../workflows/summary';
import { uniqueTaskQueue, workflowBundle } from './temporal-env';

/** The sample folder and secrets that `node scripts/setup.mjs` makes; the e2e tests need both. */
export const SAMPLE_FOLDER = path.join(projectRoot(), 'samples', 'digits');
export const PROJECT_SECRETS_FILE = path.join(projectRoot(), '.amlbatch', 'secrets.json');

export interface LocalBatchHarness {
  config: AmlbatchConfig;
  worker: Worker;
  workspaceDir: string;
}

/**
 * Builds a real worker with the real local backend over a fresh temporary workspace, on its own task queue of the
 * shared dev server. The secrets file is the project's, because the sample model is signed with its key.
 */
export async function createLocalHarness(
  env: TestWorkflowEnvironment,
  overrides: Partial<AmlbatchConfig> = {},
  /** Backends in place of the worker's default ones, such as a local backend with faults injected. */
  backends?: BackendRegistry,
): Promise<LocalBatchHarness> {
  const workspaceDir = overrides.localWorkspaceDir ?? mkdtempSync(path.join(os.tmpdir(), 'amlbatch-ws-'));
  const config: AmlbatchConfig = {
    ...loadConfig({}, projectRoot()),
    taskQueue: uniqueTaskQueue('local'),
    localWorkspaceDir: workspaceDir,
    secretsFile: PROJECT_SECRETS_FILE,
    ...overrides,
  };
  const worker = await createBatchWorker({
    connection: env.nativeConnection,
    namespace: 'default',
    config,
    jobPollIntervalMs: 200,
    ...(backends ? { backends } : {}),
    workerOptions: { workflowBundle: await workflowBundle() },
  });
  return { config, worker, workspaceDir };
}

/** Runs one batch to its end on the harness's worker and returns its summary. */
export function runLocalBatch(
  env: TestWorkflowEnvironment,
  harness: LocalBatchHarness,
  input: unknown,
  workflowId = uniqueTaskQueue('batch'),
): Promise<BatchSummary> {
  return harness.worker.runUntil(
    env.client.workflow.execute('batchScoring', {
      taskQueue: harness.config.taskQueue,
      workflowId,
      args: [input],
    }) as Promise<BatchSummary>,
  );
}

export interface ScoredRow {
  path: string;
  label: number | null;
  confidence: number | null;
  error?: string;
}

export function readRows(resultsFile: string): ScoredRow[] {
  return readFileSync(resultsFile, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as ScoredRow);
}
