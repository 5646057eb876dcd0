import { RestError } from '@azure/core-rest-pipeline';
import type { SecretClient } from '@azure/keyvault-secrets';
import { StageError } from '../../errors';
import { classifyAzureError } from './rest-errors';

const VAULT_ROLE = 'Key Vault Secrets User on the Key Vault (or an access policy allowing secret get)';

/**
 * Checks that secret `name` exists in the vault and is enabled. The value is fetched by the SDK and dropped here;
 * it is never returned, logged or put in an error. A missing secret, a disabled one, a denied permission and a
 * firewall rejection are distinct non-retryable errors naming the secret and the vault.
 */
export async function checkSecret(client: SecretClient, vaultUrl: string, name: string): Promise<void> {
  const secret = await getSecret(client, vaultUrl, name);
  if (secret.properties.enabled === false) throw disabledError(vaultUrl, name);
}

/** Reads a secret's value for use inside the calling activity only. */
export async function readSecretValue(client: SecretClient, vaultUrl: string, name: string): Promise<string> {
  const secret = await getSecret(client, vaultUrl, name);
  if (secret.properties.enabled === false) throw disabledError(vaultUrl, name);
  if (!secret.value) {
    throw new StageError('InvalidInput', `secret "${name}" in Key Vault ${vaultUrl} is empty; store the value in it`, { secret: name, vault: vaultUrl });
  }
  return secret.value;
}

async function getSecret(client: SecretClient, vaultUrl: string, name: string) {
  try {
    return await client.getSecret(name);
  } catch (error) {
    throw classifyVaultError(error, vaultUrl, name);
  }
}

function classifyVaultError(error: unknown, vaultUrl: string, name: string): StageError {
  const details = { secret: name, vault: vaultUrl };
  if (!(error instanceof RestError)) return classifyAzureError(error, { action: `read secret "${name}" from ${vaultUrl}`, role: VAULT_ROLE });
  const body = error.response?.bodyAsText ?? '';
  const innerCode = /"innererror"\s*:\s*\{[^}]*"code"\s*:\s*"([^"]+)"/.exec(body)?.[1];
  const status = error.statusCode;

  if (status === 404 || error.code === 'SecretNotFound') {
    return new StageError('NotFound', `secret "${name}" not found in Key Vault ${vaultUrl}; create it there or fix secretNames`, details);
  }
  if (status === 403 && (innerCode === 'ForbiddenByFirewall' || /firewall|not authorized.*client address|ip address/i.test(error.message))) {
    return new StageError(
      'PermissionDenied',
      `Key Vault ${vaultUrl} rejected the request for secret "${name}" at its firewall (${firstLine(error.message)}); ` +
        "allow the worker's network or IP address in the vault's networking settings",
      { ...details, reason: 'firewall' },
    );
  }
  if ((status === 403 || status === 400) && (innerCode === 'SecretDisabled' || /disabled/i.test(error.message))) {
    return disabledError(vaultUrl, name);
  }
  if (status === 403 || status === 401) {
    return new StageError(
      'PermissionDenied',
      `access to secret "${name}" in Key Vault ${vaultUrl} was denied (${status}: ${firstLine(error.message)}); ` +
        `grant the worker's identity the ${VAULT_ROLE} role`,
      { ...details, reason: 'permission' },
    );
  }
  return classifyAzureError(error, { action: `read secret "${name}" from ${vaultUrl}`, role: VAULT_ROLE });
}

function disabledError(vaultUrl: string, name: string): StageError {
  return new StageError('InvalidInput', `secret "${name}" in Key Vault ${vaultUrl} is disabled; enable it or use another secret`, {
    secret: name,
    vault: vaultUrl,
    reason: 'disabled',
  });
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? '';
}
