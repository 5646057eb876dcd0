import { readFileSync } from 'node:fs';
import { AzureMachineLearningWorkspaces } from '@azure/arm-machinelearning';
import type { TokenCredential } from '@azure/identity';
import { SecretClient } from '@azure/keyvault-secrets';
import { AnonymousCredential, BlobServiceClient, StorageSharedKeyCredential, type ContainerClient } from '@azure/storage-blob';

/** The Azure Resource Manager scope; set explicitly so a custom endpoint (an emulator) does not change it. */
export const ARM_SCOPE = 'https://management.azure.com/.default';

/** Endpoints and TLS settings of the Azure clients, read once when the worker starts. Defaults are Azure's public cloud. */
export interface AzureEndpoints {
  /** Azure Resource Manager. Env `AMLBATCH_AZURE_ARM_ENDPOINT`. @default 'https://management.azure.com' */
  armEndpoint: string;
  /**
   * Blob endpoint of a storage account, `{account}` replaced by its name. Env `AMLBATCH_AZURE_BLOB_ENDPOINT`.
   * @default 'https://{account}.blob.core.windows.net'
   */
  blobEndpointTemplate: string;
  /** Extra trusted CA certificate (PEM) for emulators with self-signed certificates. Env `AMLBATCH_AZURE_CA_FILE`. */
  caCertificatePem?: string;
  /**
   * Whether Key Vault's authentication challenge must name the vault's own domain. Only a vault test double on
   * localhost needs `false`. Env `AMLBATCH_KEY_VAULT_VERIFY_CHALLENGE_RESOURCE`. @default true
   */
  verifyKeyVaultChallengeResource: boolean;
  /** Retries the Azure SDK makes itself before a stage gets the failure. Env `AMLBATCH_AZURE_HTTP_RETRIES`. @default 3 */
  httpRetries: number;
}

export function loadAzureEndpoints(environment: NodeJS.ProcessEnv = process.env): AzureEndpoints {
  const caFile = environment.AMLBATCH_AZURE_CA_FILE;
  const retries = environment.AMLBATCH_AZURE_HTTP_RETRIES;
  if (retries !== undefined && !/^\d+$/.test(retries)) {
    throw new TypeError(`AMLBATCH_AZURE_HTTP_RETRIES=${retries} is invalid; use a whole number such as 3`);
  }
  return {
    armEndpoint: (environment.AMLBATCH_AZURE_ARM_ENDPOINT || 'https://management.azure.com').replace(/\/+$/, ''),
    blobEndpointTemplate: environment.AMLBATCH_AZURE_BLOB_ENDPOINT || 'https://{account}.blob.core.windows.net',
    ...(caFile ? { caCertificatePem: readFileSync(caFile, 'utf8') } : {}),
    verifyKeyVaultChallengeResource: environment.AMLBATCH_KEY_VAULT_VERIFY_CHALLENGE_RESOURCE !== 'false',
    httpRetries: retries === undefined ? 3 : Number(retries),
  };
}

/** Builds the Azure SDK clients for one batch from the worker's endpoints and credential. */
export class AzureClients {
  constructor(
    readonly credential: TokenCredential,
    readonly endpoints: AzureEndpoints,
  ) {}

  private get tlsOptions(): { ca: string } | undefined {
    return this.endpoints.caCertificatePem ? { ca: this.endpoints.caCertificatePem } : undefined;
  }

  machineLearning(subscriptionId: string): AzureMachineLearningWorkspaces {
    const tlsOptions = this.tlsOptions;
    return new AzureMachineLearningWorkspaces(this.credential, subscriptionId, {
      endpoint: this.endpoints.armEndpoint,
      credentialScopes: [ARM_SCOPE],
      retryOptions: { maxRetries: this.endpoints.httpRetries },
      ...(tlsOptions ? { tlsOptions } : {}),
    });
  }

  secrets(vaultUrl: string): SecretClient {
    const tlsOptions = this.tlsOptions;
    return new SecretClient(vaultUrl, this.credential, {
      disableChallengeResourceVerification: !this.endpoints.verifyKeyVaultChallengeResource,
      retryOptions: { maxRetries: this.endpoints.httpRetries },
      ...(tlsOptions ? { tlsOptions } : {}),
    });
  }

  blobEndpoint(accountName: string): string {
    return this.endpoints.blobEndpointTemplate.replace('{account}', accountName).replace(/\/+$/, '');
  }

  /** Returns a container client authorised by an account key, a SAS token, or the worker's own identity. */
  container(accountName: string, containerName: string, access: BlobAccess): ContainerClient {
    const endpoint = this.blobEndpoint(accountName);
    const options = { retryOptions: { maxTries: this.endpoints.httpRetries + 1 } };
    if (access.kind === 'account_key') {
      return new BlobServiceClient(endpoint, new StorageSharedKeyCredential(accountName, access.secret), options).getContainerClient(
        containerName,
      );
    }
    if (access.kind === 'sas') {
      const sas = access.secret.startsWith('?') ? access.secret.slice(1) : access.secret;
      return new BlobServiceClient(`${endpoint}?${sas}`, new AnonymousCredential(), options).getContainerClient(containerName);
    }
    return new BlobServiceClient(endpoint, this.credential, options).getContainerClient(containerName);
  }
}

/** Access to a blob container. Secrets live only in this object, inside one activity, never in its result. */
export type BlobAccess = { kind: 'account_key' | 'sas'; secret: string } | { kind: 'identity' };
