import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { ActivityFailure, ApplicationFailure, WorkflowFailedError } from '@temporalio/client';
import { describeWithSpec } from './aml-emulator/emulator-harness';
import { startAmlEmulator } from './support/aml-emulator';
import { CONTAINER, DATASTORE_SECRET, azureBatchInput, runAzureBatch, type AzureTestServers } from './support/azure-batch';
import { testKeyVaultFromEnvironment } from './support/azure-test-servers';
import { startAzurite } from './support/azurite';
import { PROJECT_SECRETS_FILE, SAMPLE_FOLDER } from './support/local-batch';
import { connectToSharedDevServer } from './support/temporal-env';

// The register-dataset stage's input checks on the Azure backend, against servers started on this machine: the
// Azure ML control-plane emulator, Azurite for blob storage and the Key Vault test double. Blob storage can hold a
// blob `a` next to a blob `a/b.png`, which no local folder can, so the file/folder collision is tested here.

const signingKey = (JSON.parse(readFileSync(PROJECT_SECRETS_FILE, 'utf8')) as Record<string, string>)['model-signing-key'];

let servers: AzureTestServers;

/** Returns the type and message of the activity failure behind a failed batch. */
async function activityFailureOf(promise: Promise<unknown>): Promise<{ type?: string; message: string }> {
  try {
    await promise;
  } catch (error) {
    if (!(error instanceof WorkflowFailedError)) throw error;
    let cause: unknown = error.cause;
    while (cause instanceof Error && !(cause instanceof ActivityFailure)) cause = cause.cause;
    const application = cause instanceof ActivityFailure ? cause.cause : undefined;
    if (!(application instanceof ApplicationFailure)) throw new Error(`expected an activity failure, got ${String(error.cause)}`, { cause: error });
    return { message: application.message, ...(application.type ? { type: application.type } : {}) };
  }
  throw new Error('expected the batch to fail');
}

describeWithSpec('input checks on the Azure backend', () => {
  beforeAll(async () => {
    const env = await connectToSharedDevServer();
    const vault = testKeyVaultFromEnvironment();
    const azurite = await startAzurite();
    const emulator = await startAmlEmulator({ storage: azurite, statusStepDelayMs: 100 });
    servers = { env, azurite, emulator, vault };

    await vault.setSecret('model-signing-key', signingKey);
    await vault.setSecret(DATASTORE_SECRET, azurite.accountKey);
    await azurite.serviceClient().getContainerClient(CONTAINER).createIfNotExists();
  });

  afterAll(async () => {
    await servers?.emulator.stop();
    await servers?.azurite.stop();
    await servers?.env.teardown();
  });

  test('file and folder with one name fail registration', async () => {
    const container = servers.azurite.serviceClient().getContainerClient(CONTAINER);
    const [sample] = readdirSync(path.join(SAMPLE_FOLDER, '0')).sort();
    const png = readFileSync(path.join(SAMPLE_FOLDER, '0', sample));
    const blobs = ['collide/a', 'collide/a/b.png', 'collide/ok.png'];
    for (const name of blobs) await container.getBlockBlobClient(name).uploadData(png);
    const requestsBefore = servers.emulator.requests.length;

    const failure = await activityFailureOf(runAzureBatch(servers, azureBatchInput(servers, { inputFolder: 'collide' })));

    expect(failure.type).toBe('InvalidInput');
    expect(failure.message).toMatch(/^input checks of collide\/ in container images found 1 problem, so no dataset version was registered/);
    expect(failure.message).toContain('1 name is both a file and a folder, which blob storage allows but a file system does not');
    expect(failure.message).toContain('(affected: a is a file and also the folder of a/b.png)');

    // Nothing was registered or uploaded, and the input blobs are as they were.
    const dataRequests = servers.emulator.requests
      .slice(requestsBefore)
      .filter((request) => request.method === 'PUT' && /\/data\/[^/]+\/versions\/[^/]+$/.test(request.path));
    expect(dataRequests).toEqual([]);
    const stored: string[] = [];
    for await (const blob of container.listBlobsFlat()) stored.push(blob.name);
    expect(stored.sort()).toEqual([...blobs].sort());
  });
});
