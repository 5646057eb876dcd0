import { randomUUID } from 'node:crypto';
import { RestError } from '@azure/core-rest-pipeline';
import { SecretClient } from '@azure/keyvault-secrets';
import { AZURE_TEST_VARIABLES, testKeyVaultFromEnvironment, testStorageFromEnvironment } from './support/azure-test-servers';
import type { TestKeyVault } from './support/key-vault';

// The Azure test servers that Jest's global setup starts, used through the real Azure SDK clients: the Key Vault
// test double with the simulated Azure ML managed identity, and Azurite with its published development account.

let vault: TestKeyVault;
const savedEnvironment = { ...process.env };

beforeAll(() => {
  vault = testKeyVaultFromEnvironment();
});

afterAll(() => {
  process.env = savedEnvironment;
});

/** Unique per test, because the vault lives for the whole Jest run. */
function secretName(label: string): string {
  return `${label}-${randomUUID().slice(0, 8)}`;
}

async function restErrorOf(promise: Promise<unknown>): Promise<RestError> {
  const error = await promise.then(
    () => undefined,
    (rejection: unknown) => rejection,
  );
  if (!(error instanceof RestError)) throw new Error(`expected a RestError, got ${String(error)}`);
  return error;
}

describe('Key Vault test double', () => {
  test('publishes its coordinates', () => {
    expect(process.env[AZURE_TEST_VARIABLES.keyVaultUrl]).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(process.env[AZURE_TEST_VARIABLES.managedIdentityEndpoint]).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/msi\/token$/);
    expect(vault.caCertPem).toContain('-----BEGIN CERTIFICATE-----');
  });

  test('managed identity credential gets a token', async () => {
    const token = await vault.credential().getToken('https://vault.azure.net/.default');

    expect(token?.token.split('.')).toHaveLength(3);
    expect(token?.expiresOnTimestamp).toBeGreaterThan(Date.now() + 30 * 60_000);
  });

  test('reader identity reads a secret', async () => {
    const name = secretName('reader-reads');
    await vault.setSecret(name, 'value-for-the-reader-51c2');

    const secret = await vault.secretClient().getSecret(name);

    expect(secret.value).toBe('value-for-the-reader-51c2');
    expect(secret.properties.enabled).toBe(true);
    expect(secret.properties.vaultUrl).toBe(vault.vaultUrl);
  });

  test('disabled secret is reported as disabled', async () => {
    const name = secretName('disabled');
    await vault.setSecret(name, 'value-of-a-disabled-secret-93aa', { enabled: false });

    const error = await restErrorOf(vault.secretClient().getSecret(name));

    expect(error.statusCode).toBe(403);
    expect(error.code).toBe('Forbidden');
    expect(error.message).toContain('disabled secret');
    expect(JSON.stringify(error.details)).toContain('SecretDisabled');
    expect(error.message).not.toContain('value-of-a-disabled-secret-93aa');
  });

  test('disabled secret is listed as disabled', async () => {
    const name = secretName('listed-disabled');
    await vault.setSecret(name, 'value-listed-disabled-7d10', { enabled: false });

    const listed = [];
    for await (const properties of vault.secretClient().listPropertiesOfSecrets()) listed.push(properties);

    expect(listed.find((properties) => properties.name === name)?.enabled).toBe(false);
  });

  test('missing secret is not found', async () => {
    const error = await restErrorOf(vault.secretClient().getSecret(secretName('missing')));

    expect(error.statusCode).toBe(404);
    expect(error.code).toBe('SecretNotFound');
  });

  test('identity without access is forbidden', async () => {
    const name = secretName('no-access');
    await vault.setSecret(name, 'value-nobody-else-reads-44e0');

    const error = await restErrorOf(vault.secretClient(vault.identities.noAccess).getSecret(name));

    expect(error.statusCode).toBe(403);
    expect(JSON.stringify(error.details)).toContain('AccessDenied');
    expect(error.message).toContain('does not have secrets get permission');
  });

  test('reader identity cannot set secrets', async () => {
    const error = await restErrorOf(vault.secretClient().setSecret(secretName('reader-sets'), 'value-set-by-reader-7a01'));

    expect(error.statusCode).toBe(403);
    expect(error.message).toContain('does not have secrets set permission');
  });

  test('client without the CA rejects the certificate', async () => {
    const untrusting = new SecretClient(vault.vaultUrl, vault.credential(), {
      disableChallengeResourceVerification: true,
      retryOptions: { maxRetries: 0 },
    });

    const error = await restErrorOf(untrusting.getSecret('any-name'));

    expect(error.code).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
  });

  test('challenge names vault.azure.net', async () => {
    const verifying = new SecretClient(vault.vaultUrl, vault.credential(), {
      tlsOptions: { ca: vault.caCertPem },
      retryOptions: { maxRetries: 0 },
    });

    await expect(verifying.getSecret('any-name')).rejects.toThrow(/challenge resource 'vault.azure.net' does not match/);
  });
});

describe('Azurite', () => {
  test('creates, uploads and lists blobs', async () => {
    const storage = testStorageFromEnvironment();
    const container = storage.serviceClient().getContainerClient(`test-${randomUUID().slice(0, 8)}`);

    await container.create();
    await container.getBlockBlobClient('folder/a.txt').upload('alpha', 5);
    await container.getBlockBlobClient('folder/b.txt').upload('beta', 4);

    const names = [];
    for await (const blob of container.listBlobsFlat({ prefix: 'folder/' })) names.push(blob.name);
    expect(names).toEqual(['folder/a.txt', 'folder/b.txt']);
    expect((await container.getBlobClient('folder/b.txt').downloadToBuffer()).toString()).toBe('beta');
    expect(storage.accountName).toBe('devstoreaccount1');
  });
});
