import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { AzureBackend } from '../../activities/backends/azure/azure-backend';
import type { BatchScoringInput } from '../../workflows/input';
import type { BatchSummary } from '../../workflows/summary';
import { describeWithSpec } from '../aml-emulator/emulator-harness';
import { startAmlEmulator, type AmlEmulator } from '../support/aml-emulator';
import { testKeyVaultFromEnvironment } from '../support/azure-test-servers';
import { startAzurite, type AzuriteServer } from '../support/azurite';
import type { TestKeyVault } from '../support/key-vault';
import { CONTAINER, DATASTORE_SECRET, azureBatchInput, createAzureBackend, runAzureBatch, type AzureTestServers } from '../support/azure-batch';
import { PROJECT_SECRETS_FILE, SAMPLE_FOLDER, readRows } from '../support/local-batch';
import { connectToSharedDevServer, uniqueTaskQueue } from '../support/temporal-env';

// The batchScoring workflow on the Azure backend, end to end against three servers started on this machine: the
// Azure ML control-plane emulator (HTTPS, validating every request and response against the official REST
// specification), Azurite for blob storage, and the Key Vault test double. The job's Python processes read the
// model's signing key from the vault with the simulated compute identity.

const SAMPLE_PREFIX = 'batches/digits';
const signingKey = (JSON.parse(readFileSync(PROJECT_SECRETS_FILE, 'utf8')) as Record<string, string>)['model-signing-key'];

let env: TestWorkflowEnvironment;
let azurite: AzuriteServer;
let emulator: AmlEmulator;
let vault: TestKeyVault;

function listFiles(root: string, relative = ''): string[] {
  return readdirSync(path.join(root, relative), { withFileTypes: true }).flatMap((entry) => {
    const child = relative === '' ? entry.name : `${relative}/${entry.name}`;
    return entry.isDirectory() ? listFiles(root, child) : [child];
  });
}

function servers(): AzureTestServers {
  return { env, azurite, emulator, vault };
}

function azureBackend(overrides: Partial<ConstructorParameters<typeof AzureBackend>[0]> = {}): AzureBackend {
  return createAzureBackend(servers(), overrides);
}

function azureInput(overrides: Partial<BatchScoringInput> = {}, datastore: Record<string, unknown> = {}): BatchScoringInput {
  return azureBatchInput(servers(), { inputFolder: SAMPLE_PREFIX, ...overrides }, datastore);
}

function runBatch(input: BatchScoringInput, backend: AzureBackend = azureBackend(), workflowId = uniqueTaskQueue('azure-batch')): Promise<BatchSummary> {
  return runAzureBatch(servers(), input, backend, workflowId);
}

async function failureOf(promise: Promise<unknown>): Promise<{ message: string; type?: string }> {
  try {
    await promise;
  } catch (error) {
    if (!(error instanceof WorkflowFailedError)) throw error;
    let inner: unknown = error.cause;
    let type: string | undefined;
    while (inner instanceof Error && inner.cause instanceof Error) inner = inner.cause;
    if (inner && typeof inner === 'object' && 'type' in inner) type = (inner as { type?: string }).type;
    return { message: error.cause?.message ?? '', ...(type ? { type } : {}) };
  }
  throw new Error('expected the batch to fail');
}

function jobPuts(): number {
  return emulator.requests.filter((request) => request.method === 'PUT' && /\/jobs\/[^/]+$/.test(request.path)).length;
}

describeWithSpec('batchScoring on the Azure backend', () => {
  beforeAll(async () => {
    env = await connectToSharedDevServer();
    vault = testKeyVaultFromEnvironment();
    azurite = await startAzurite();
    emulator = await startAmlEmulator({ storage: azurite, statusStepDelayMs: 100 });

    await vault.setSecret('model-signing-key', signingKey);
    await vault.setSecret(DATASTORE_SECRET, azurite.accountKey);
    const container = azurite.serviceClient().getContainerClient(CONTAINER);
    await container.createIfNotExists();
    for (const file of listFiles(SAMPLE_FOLDER)) {
      await container.getBlockBlobClient(`${SAMPLE_PREFIX}/${file}`).uploadFile(path.join(SAMPLE_FOLDER, file));
    }
  });

  afterAll(async () => {
    await emulator?.stop();
    await azurite?.stop();
    await env?.teardown();
  });

  test('sample folder rows match the local backend', async () => {
    const workflowId = uniqueTaskQueue('azure-sample');
    const summary = await runBatch(azureInput(), azureBackend(), workflowId);

    const files = listFiles(SAMPLE_FOLDER);
    expect(summary.outcome).toBe('scored');
    expect(summary.itemsTotal).toBe(files.length);
    expect(summary.itemsScored).toBe(files.length);
    const azureRows = readRows(summary.resultsFile!).sort((a, b) => a.path.localeCompare(b.path));

    const localSummary = await runBatch({ inputFolder: SAMPLE_FOLDER, miniBatchSize: 20, processCount: 2 });
    const localRows = readRows(localSummary.resultsFile!).sort((a, b) => a.path.localeCompare(b.path));
    expect(azureRows).toEqual(localRows);

    // No secret value reaches the workflow history: not the signing key, not the datastore's account key.
    const history = JSON.stringify(await env.client.workflow.getHandle(workflowId).fetchHistory());
    expect(history).not.toContain(signingKey);
    expect(history).not.toContain(azurite.accountKey);
    expect(emulator.validationErrors).toEqual([]);
  });

  test('retried submit after a lost response creates one job', async () => {
    const before = jobPuts();
    emulator.injectFault({ method: 'PUT', path: /\/jobs\/[^/]+$/, times: 1, response: { kind: 'lost-response', then: 'server-error' } });

    const summary = await runBatch(azureInput());

    expect(summary.outcome).toBe('scored');
    expect(jobPuts() - before).toBe(1);
    expect(emulator.jobStatusHistory(summary.jobName!)).toContain('Completed');
  });

  test('throttled request waits for Retry-After and succeeds', async () => {
    const before = emulator.requests.length;
    emulator.injectFault({ method: 'GET', path: /\/workspaces\/[^/]+$/, times: 1, response: { kind: 'throttle', retryAfterSeconds: 1 } });

    const summary = await runBatch(azureInput({ inputFolder: `${SAMPLE_PREFIX}/7` }));

    expect(summary.outcome).toBe('scored');
    const workspaceReads = emulator.requests.slice(before).filter((request) => request.method === 'GET' && /\/workspaces\/[^/]+$/.test(request.path));
    expect(workspaceReads.map((request) => request.status)).toEqual([429, 200]);
  });

  test('transient server errors are retried', async () => {
    emulator.injectFault({ method: 'PUT', path: /\/data\/[^/]+\/versions\/[^/]+$/, times: 2, response: { kind: 'server-error' } });

    const summary = await runBatch(azureInput({ inputFolder: `${SAMPLE_PREFIX}/5` }));

    expect(summary.outcome).toBe('scored');
  });

  test('missing credential names the variables', async () => {
    const backend = azureBackend({ credential: undefined, environment: { AMLBATCH_AZURE_CREDENTIAL: 'service-principal-secret' } });

    const failure = await failureOf(runBatch(azureInput(), backend));

    expect(failure.message).toContain('stage authenticate failed: credential service-principal-secret needs AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET');
  });

  test('401 from the workspace is not retried', async () => {
    emulator.injectFault({ method: 'GET', path: /\/workspaces\/[^/]+$/, times: 1, response: { kind: 'unauthorized' } });

    const failure = await failureOf(runBatch(azureInput()));

    expect(failure.type).toBe('PermissionDenied');
    expect(failure.message).toContain('rejected as unauthenticated (401');
  });

  test('403 names the missing role', async () => {
    emulator.injectFault({ method: 'GET', path: /\/workspaces\/[^/]+$/, times: 1, response: { kind: 'forbidden' } });

    const failure = await failureOf(runBatch(azureInput()));

    expect(failure.type).toBe('PermissionDenied');
    expect(failure.message).toContain('grant the worker\'s identity the AzureML Data Scientist (or Contributor) on the Azure ML workspace role');
  });

  test('missing secret names secret and vault', async () => {
    const failure = await failureOf(runBatch(azureInput({ secretNames: ['model-signing-key', 'not-in-vault'] })));

    expect(failure.type).toBe('NotFound');
    expect(failure.message).toContain(`secret "not-in-vault" not found in Key Vault ${vault.vaultUrl}`);
  });

  test('disabled secret is its own error', async () => {
    await vault.setSecret('switched-off', 'x', { enabled: false });

    const failure = await failureOf(runBatch(azureInput({ secretNames: ['switched-off'] })));

    expect(failure.message).toContain(`secret "switched-off" in Key Vault ${vault.vaultUrl} is disabled`);
  });

  test('datastore with other settings is a conflict', async () => {
    await runBatch(azureInput({ inputFolder: `${SAMPLE_PREFIX}/1` }, { name: 'conflict_store' }));

    const failure = await failureOf(runBatch(azureInput({ inputFolder: `${SAMPLE_PREFIX}/1` }, { name: 'conflict_store', containerName: 'other-container' })));

    expect(failure.type).toBe('Conflict');
    expect(failure.message).toContain('datastore conflict_store exists with different settings (containerName: existing "images", requested "other-container")');
  });

  test('empty folder submits nothing', async () => {
    const before = jobPuts();

    const summary = await runBatch(azureInput({ inputFolder: 'batches/nothing-here' }));

    expect(summary.outcome).toBe('nothing_to_score');
    expect(jobPuts()).toBe(before);
  });

  test('failed job carries the reason from its logs', async () => {
    emulator.failNextJob('error threshold exceeded: 12 failed items > error_threshold 0');

    const failure = await failureOf(runBatch(azureInput({ inputFolder: `${SAMPLE_PREFIX}/2` })));

    expect(failure.type).toBe('JobFailed');
    expect(failure.message).toContain('error threshold exceeded: 12 failed items > error_threshold 0');
    expect(failure.message).toContain('logs/job_result.txt');
  });

  test('job cancelled by someone else is reported so', async () => {
    const workflowId = uniqueTaskQueue('azure-cancelled');
    const batch = runBatch(azureInput({ inputFolder: `${SAMPLE_PREFIX}/4` }), azureBackend(), workflowId);
    const jobName = `amlbatch-${workflowId}-1`;
    for (let polls = 0; emulator.jobStatus(jobName) === undefined && polls < 600; polls += 1) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    emulator.cancelJobExternally(jobName);

    const failure = await failureOf(batch);

    expect(failure.type).toBe('JobCanceled');
    expect(failure.message).toContain(`job ${jobName} was canceled outside this batch`);
  });

  test('datastore key never appears in errors', async () => {
    const failure = await failureOf(runBatch(azureInput({ secretNames: ['missing-one'] })));

    expect(failure.message).not.toContain(azurite.accountKey);
  });
});
