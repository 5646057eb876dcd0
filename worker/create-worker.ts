import { type NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities } from '../activities';
import path from 'node:path';
import { AzureBackend } from '../activities/backends/azure/azure-backend';
import { loadAzureEndpoints } from '../activities/backends/azure/clients';
import { LocalBackend } from '../activities/backends/local/local-backend';
import type { BackendRegistry } from '../activities/backends/registry';
import type { AmlbatchConfig } from '../common/config';

export interface BatchWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  config: AmlbatchConfig;
  /** Backends to offer instead of the default local one; tests pass their own. */
  backends?: BackendRegistry;
  /** Milliseconds between two polls of a running job. @default 1000 */
  jobPollIntervalMs?: number;
  /** Options passed through to `Worker.create`, such as `workflowBundle` or `shutdownGraceTime`. */
  workerOptions?: Partial<WorkerOptions>;
}

/**
 * Builds the worker that hosts the `batchScoring` workflow and its stage activities. Used by `worker/main.ts`, the
 * demo and the tests, so all three run the same wiring.
 */
export async function createBatchWorker(options: BatchWorkerOptions): Promise<Worker> {
  const backends: BackendRegistry = options.backends ?? createDefaultBackends(options.config);
  const activities = createActivities({
    backends,
    ...(options.jobPollIntervalMs !== undefined ? { jobPollIntervalMs: options.jobPollIntervalMs } : {}),
  });
  return Worker.create({
    connection: options.connection,
    namespace: options.namespace,
    taskQueue: options.config.taskQueue,
    activities,
    ...(options.workerOptions?.workflowBundle ? {} : { workflowsPath: require.resolve('../workflows') }),
    // In-flight activities get this long to finish on SIGINT/SIGTERM; a waiting activity stops at once and the
    // detached local job keeps running, so the next worker attaches to it.
    shutdownGraceTime: '10 seconds',
    ...options.workerOptions,
  });
}

/**
 * The backends every worker offers: `local`, and `azure` configured from `AMLBATCH_AZURE_*` and `AZURE_*` variables.
 * The Azure credential is only used when a batch asks for the Azure backend, so a worker without Azure settings
 * runs local batches as before and fails Azure ones at the authenticate stage with the missing variables named.
 */
export function createDefaultBackends(config: AmlbatchConfig, environment: NodeJS.ProcessEnv = process.env): BackendRegistry {
  return {
    local: new LocalBackend({ workspaceDir: config.localWorkspaceDir, secretsFile: config.secretsFile }),
    azure: new AzureBackend({
      endpoints: loadAzureEndpoints(environment),
      resultsRoot: path.join(config.localWorkspaceDir, 'results'),
      environment,
    }),
  };
}
