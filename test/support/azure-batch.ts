import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { createActivities } from '../../activities';
import { AzureBackend } from '../../activities/backends/azure/azure-backend';
import type { AzureEndpoints } from '../../activities/backends/azure/clients';
import { LocalBackend } from '../../activities/backends/local/local-backend';
import type { BatchScoringInput } from '../../workflows/input';
import type { BatchSummary } from '../../workflows/summary';
import type { AmlEmulator } from './aml-emulator';
import type { AzuriteServer } from './azurite';
import type { TestKeyVault } from './key-vault';
import { PROJECT_SECRETS_FILE } from './local-batch';
import { uniqueTaskQueue, workflowBundle } from './temporal-env';

/** Blob container of the batches' input folders, and the Key Vault secret with its account key. */
export const CONTAINER = 'images';
export const DATASTORE_SECRET = 'images-account-key';

/** The servers an Azure batch test runs against, all started on this machine. */
export interface AzureTestServers {
  env: TestWorkflowEnvironment;
  azurite: AzuriteServer;
  emulator: AmlEmulator;
  vault: TestKeyVault;
}

export function azureEndpoints({ azurite, emulator, vault }: AzureTestServers): AzureEndpoints {
  return {
    armEndpoint: emulator.endpoint,
    blobEndpointTemplate: azurite.blobEndpoint.replace(/\/devstoreaccount1$/, '/{account}'),
    // One PEM string may hold several certificates: the emulator's and the vault's.
    caCertificatePem: `${emulator.certPem}\n${vault.caCertPem}`,
    verifyKeyVaultChallengeResource: false,
    httpRetries: 0,
  };
}

export function createAzureBackend(servers: AzureTestServers, overrides: Partial<ConstructorParameters<typeof AzureBackend>[0]> = {}): AzureBackend {
  return new AzureBackend({
    endpoints: azureEndpoints(servers),
    resultsRoot: mkdtempSync(path.join(os.tmpdir(), 'amlbatch-azure-results-')),
    credential: servers.vault.credential(),
    environment: {},
    pollIntervalMs: { min: 100, max: 400 },
    ...overrides,
  });
}

/** Builds a batch input for the emulated workspace that reads `inputFolder` of the test container with its account key. */
export function azureBatchInput(
  { azurite, emulator, vault }: AzureTestServers,
  overrides: Partial<BatchScoringInput> & { inputFolder: string },
  datastore: Record<string, unknown> = {},
): BatchScoringInput {
  return {
    backend: 'azure',
    miniBatchSize: 20,
    processCount: 2,
    // Failures end the batch at once instead of waiting for an operator's retry signal.
    operatorRetryTimeout: 0,
    azure: {
      subscriptionId: emulator.subscriptionId,
      resourceGroup: emulator.resourceGroup,
      workspaceName: emulator.workspaceName,
      compute: 'cpu-cluster',
      keyVaultUrl: vault.vaultUrl,
      datastore: {
        name: 'images_store',
        accountName: azurite.accountName,
        containerName: CONTAINER,
        credential: 'account_key',
        secretName: DATASTORE_SECRET,
        ...datastore,
      },
      // Settings of the simulated compute: its identity endpoint and the test vault's certificate. No secret here.
      environmentVariables: {
        ...vault.managedIdentityEnvironment,
        AMLBATCH_KEY_VAULT_CA_BUNDLE: vault.caCertPath,
        AMLBATCH_KEY_VAULT_VERIFY_CHALLENGE_RESOURCE: 'false',
      },
    },
    ...overrides,
  };
}

/** Creates a worker with the given Azure backend (and a local one) on its own task queue. */
export async function createAzureWorker(servers: AzureTestServers, backend: AzureBackend): Promise<{ worker: Worker; taskQueue: string }> {
  const taskQueue = uniqueTaskQueue('azure');
  const worker = await Worker.create({
    connection: servers.env.nativeConnection,
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: createActivities({
      backends: {
        azure: backend,
        local: new LocalBackend({ workspaceDir: mkdtempSync(path.join(os.tmpdir(), 'amlbatch-ws-')), secretsFile: PROJECT_SECRETS_FILE }),
      },
      jobPollIntervalMs: 100,
    }),
  });
  return { worker, taskQueue };
}

/** Runs one batch to its end on a new worker and returns its summary. */
export async function runAzureBatch(
  servers: AzureTestServers,
  input: BatchScoringInput,
  backend: AzureBackend = createAzureBackend(servers),
  workflowId = uniqueTaskQueue('azure-batch'),
): Promise<BatchSummary> {
  const { worker, taskQueue } = await createAzureWorker(servers, backend);
  return worker.runUntil(servers.env.client.workflow.execute('batchScoring', { taskQueue, workflowId, args: [input] }) as Promise<BatchSummary>);
}
