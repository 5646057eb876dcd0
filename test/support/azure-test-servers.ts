import path from 'node:path';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { AZURITE_ACCOUNT, AZURITE_ACCOUNT_KEY, startAzurite, type AzuriteServer } from './azurite';
import { connectTestKeyVault, startTestKeyVault, type StartedTestKeyVault, type TestKeyVault } from './key-vault';

/**
 * Environment variables in which Jest's global setup publishes where the Azure test servers run. None contains a
 * secret, because the storage key is Azurite's published development key and the managed identity header is a
 * fixed published value. Setting `AMLBATCH_TEST_BLOB_ENDPOINT` or `AMLBATCH_TEST_KEY_VAULT_URL` (with the
 * variables of its group) before Jest starts makes the setup use that server instead of starting one.
 */
export const AZURE_TEST_VARIABLES = {
  /** Blob endpoint including the account, e.g. `http://127.0.0.1:41234/devstoreaccount1`. */
  blobEndpoint: 'AMLBATCH_TEST_BLOB_ENDPOINT',
  storageAccount: 'AMLBATCH_TEST_STORAGE_ACCOUNT',
  storageAccountKey: 'AMLBATCH_TEST_STORAGE_ACCOUNT_KEY',
  keyVaultUrl: 'AMLBATCH_TEST_KEY_VAULT_URL',
  /** PEM file of the vault's self-signed certificate. */
  keyVaultCaFile: 'AMLBATCH_TEST_KEY_VAULT_CA_FILE',
  /** Managed identity token endpoint: the `MSI_ENDPOINT` of the simulated Azure ML compute. */
  managedIdentityEndpoint: 'AMLBATCH_TEST_MSI_ENDPOINT',
  /** The `MSI_SECRET` header value of the simulated compute. It is fixed and published, not a secret. */
  managedIdentityHeader: 'AMLBATCH_TEST_MSI_SECRET',
  tenantId: 'AMLBATCH_TEST_TENANT_ID',
  /** Client id of the compute's system-assigned identity, which may get and list secrets. */
  readerClientId: 'AMLBATCH_TEST_KEY_VAULT_READER_CLIENT_ID',
  /** Client id of a user-assigned identity that may also set secrets. */
  administratorClientId: 'AMLBATCH_TEST_KEY_VAULT_ADMIN_CLIENT_ID',
  /** Client id of a user-assigned identity without any access to the vault. */
  noAccessClientId: 'AMLBATCH_TEST_KEY_VAULT_NO_ACCESS_CLIENT_ID',
} as const;

/** Azure test servers that this process started, with their startup times. */
export interface AzureTestServers {
  /** Milliseconds from start to ready, per server. A server given through the environment has none. */
  startupMs: { azurite?: number; keyVault?: number };
  stop(): Promise<void>;
}

/**
 * Starts Azurite's blob service and the Key Vault test double side by side, once per Jest run, and publishes
 * their coordinates in `process.env` under {@link AZURE_TEST_VARIABLES}. A server already given through those
 * variables is used instead. When one server fails, the other is stopped before the error is raised.
 */
export async function startAzureTestServers(options: { logDir: string }): Promise<AzureTestServers> {
  const startupMs: AzureTestServers['startupMs'] = {};
  const timed = async <T>(name: keyof AzureTestServers['startupMs'], start: () => Promise<T>): Promise<T> => {
    const began = performance.now();
    const server = await start();
    startupMs[name] = Math.round(performance.now() - began);
    return server;
  };

  const [azurite, keyVault] = await Promise.allSettled([
    process.env[AZURE_TEST_VARIABLES.blobEndpoint] ? Promise.resolve(undefined) : timed('azurite', startAzurite),
    process.env[AZURE_TEST_VARIABLES.keyVaultUrl]
      ? Promise.resolve(undefined)
      : timed('keyVault', () => startTestKeyVault({ logFile: path.join(options.logDir, 'key-vault-double.log') })),
  ]);
  const started: Array<AzuriteServer | StartedTestKeyVault> = [];
  for (const result of [azurite, keyVault]) if (result.status === 'fulfilled' && result.value) started.push(result.value);
  const stop = async (): Promise<void> => {
    await Promise.all(started.map((server) => server.stop()));
  };

  const failure = [azurite, keyVault].find((result) => result.status === 'rejected');
  if (failure) {
    await stop();
    throw failure.reason;
  }

  if (azurite.status === 'fulfilled' && azurite.value) publishStorage(azurite.value);
  if (keyVault.status === 'fulfilled' && keyVault.value) publishKeyVault(keyVault.value);
  return { startupMs, stop };
}

function publishStorage(azurite: AzuriteServer): void {
  process.env[AZURE_TEST_VARIABLES.blobEndpoint] = azurite.blobEndpoint;
  process.env[AZURE_TEST_VARIABLES.storageAccount] = azurite.accountName;
  process.env[AZURE_TEST_VARIABLES.storageAccountKey] = azurite.accountKey;
}

function publishKeyVault(vault: TestKeyVault): void {
  process.env[AZURE_TEST_VARIABLES.keyVaultUrl] = vault.vaultUrl;
  process.env[AZURE_TEST_VARIABLES.keyVaultCaFile] = vault.caCertPath;
  process.env[AZURE_TEST_VARIABLES.managedIdentityEndpoint] = vault.managedIdentityEndpoint;
  process.env[AZURE_TEST_VARIABLES.managedIdentityHeader] = vault.managedIdentityHeader;
  process.env[AZURE_TEST_VARIABLES.tenantId] = vault.tenantId;
  process.env[AZURE_TEST_VARIABLES.readerClientId] = vault.identities.reader;
  process.env[AZURE_TEST_VARIABLES.administratorClientId] = vault.identities.administrator;
  process.env[AZURE_TEST_VARIABLES.noAccessClientId] = vault.identities.noAccess;
}

/** Reads a published variable, which is missing only when the global setup did not run. */
function requireVariable(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set; run the tests through Jest's global setup (npx jest or npm test), which starts the Azure test servers`);
  }
  return value;
}

/** Returns the Azurite storage account of this run, with a client authorised by its published development key. */
export function testStorageFromEnvironment(): { blobEndpoint: string; accountName: string; accountKey: string; serviceClient(): BlobServiceClient } {
  const blobEndpoint = requireVariable(AZURE_TEST_VARIABLES.blobEndpoint);
  const accountName = process.env[AZURE_TEST_VARIABLES.storageAccount] || AZURITE_ACCOUNT;
  const accountKey = process.env[AZURE_TEST_VARIABLES.storageAccountKey] || AZURITE_ACCOUNT_KEY;
  return {
    blobEndpoint,
    accountName,
    accountKey,
    serviceClient: () => new BlobServiceClient(blobEndpoint, new StorageSharedKeyCredential(accountName, accountKey)),
  };
}

/** Returns the Key Vault test double of this run, with clients for it. */
export function testKeyVaultFromEnvironment(): TestKeyVault {
  return connectTestKeyVault({
    vaultUrl: requireVariable(AZURE_TEST_VARIABLES.keyVaultUrl),
    caCertPath: requireVariable(AZURE_TEST_VARIABLES.keyVaultCaFile),
    managedIdentityEndpoint: requireVariable(AZURE_TEST_VARIABLES.managedIdentityEndpoint),
    managedIdentityHeader: requireVariable(AZURE_TEST_VARIABLES.managedIdentityHeader),
    tenantId: requireVariable(AZURE_TEST_VARIABLES.tenantId),
    identities: {
      reader: requireVariable(AZURE_TEST_VARIABLES.readerClientId),
      administrator: requireVariable(AZURE_TEST_VARIABLES.administratorClientId),
      noAccess: requireVariable(AZURE_TEST_VARIABLES.noAccessClientId),
    },
  });
}
