import { readFileSync } from 'node:fs';
import {
  AzureCliCredential,
  ClientCertificateCredential,
  ClientSecretCredential,
  DefaultAzureCredential,
  ManagedIdentityCredential,
  type TokenCredential,
} from '@azure/identity';
import { StageError } from '../../errors';

/** Credential kinds the Azure backend can use, chosen with env `AMLBATCH_AZURE_CREDENTIAL`. @default 'default' */
export const CREDENTIAL_KINDS = ['default', 'service-principal-secret', 'service-principal-certificate', 'managed-identity', 'azure-cli'] as const;
export type CredentialKind = (typeof CREDENTIAL_KINDS)[number];

/**
 * Every environment variable that can configure a credential, for the "no credential configured" message. The
 * `AZURE_*` names are the ones `@azure/identity` reads.
 */
export const CREDENTIAL_ENVIRONMENT_VARIABLES = [
  'AMLBATCH_AZURE_CREDENTIAL',
  'AZURE_TENANT_ID',
  'AZURE_CLIENT_ID',
  'AZURE_CLIENT_SECRET',
  'AZURE_CLIENT_CERTIFICATE_PATH',
  'AZURE_CLIENT_CERTIFICATE_PASSWORD',
  'AZURE_FEDERATED_TOKEN_FILE',
  'IDENTITY_ENDPOINT',
  'IDENTITY_HEADER',
  'MSI_ENDPOINT',
  'AZURE_TOKEN_CREDENTIALS',
] as const;

/** Builds the credential the environment selects; a kind whose variables are missing fails with their names. */
export function createCredential(environment: NodeJS.ProcessEnv = process.env): { credential: TokenCredential; kind: CredentialKind } {
  const kind = (environment.AMLBATCH_AZURE_CREDENTIAL || 'default') as CredentialKind;
  if (!CREDENTIAL_KINDS.includes(kind)) {
    throw new StageError(
      'InvalidInput',
      `AMLBATCH_AZURE_CREDENTIAL=${environment.AMLBATCH_AZURE_CREDENTIAL} is invalid; use one of ${CREDENTIAL_KINDS.join(', ')}`,
    );
  }
  const require = (...names: string[]): string[] => {
    const missing = names.filter((name) => !environment[name]);
    if (missing.length > 0) {
      throw new StageError('InvalidInput', `credential ${kind} needs ${missing.join(', ')}; set them in the worker's environment`, {
        credential: kind,
        missing,
      });
    }
    return names.map((name) => environment[name]!);
  };

  switch (kind) {
    case 'service-principal-secret': {
      const [tenantId, clientId, secret] = require('AZURE_TENANT_ID', 'AZURE_CLIENT_ID', 'AZURE_CLIENT_SECRET');
      return { credential: new ClientSecretCredential(tenantId, clientId, secret), kind };
    }
    case 'service-principal-certificate': {
      const [tenantId, clientId, certificatePath] = require('AZURE_TENANT_ID', 'AZURE_CLIENT_ID', 'AZURE_CLIENT_CERTIFICATE_PATH');
      // Read once here so a missing file is a clear configuration error, not a failure at the first token request.
      const certificate = readFileSync(certificatePath, 'utf8');
      const password = environment.AZURE_CLIENT_CERTIFICATE_PASSWORD;
      return {
        credential: new ClientCertificateCredential(tenantId, clientId, password ? { certificate, certificatePassword: password } : { certificate }),
        kind,
      };
    }
    case 'managed-identity': {
      const clientId = environment.AZURE_CLIENT_ID;
      return { credential: clientId ? new ManagedIdentityCredential(clientId) : new ManagedIdentityCredential(), kind };
    }
    case 'azure-cli':
      return { credential: new AzureCliCredential(), kind };
    case 'default':
      return { credential: new DefaultAzureCredential(), kind };
  }
}

/** Returns the message for a credential that produced no token because nothing configured it. */
export function noCredentialMessage(kind: CredentialKind, cause: string): string {
  return (
    `no Azure credential configured (${kind}: ${cause}). Configure one of: a service principal with AZURE_TENANT_ID, ` +
    'AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH); a managed identity (on Azure, ' +
    'AZURE_CLIENT_ID for a user-assigned one); `az login` for the Azure CLI; or workload identity with ' +
    `AZURE_FEDERATED_TOKEN_FILE. Choose explicitly with AMLBATCH_AZURE_CREDENTIAL (${CREDENTIAL_KINDS.join(', ')}). ` +
    `Variables read: ${CREDENTIAL_ENVIRONMENT_VARIABLES.join(', ')}`
  );
}
