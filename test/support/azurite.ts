import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { freePort, isPortInUse } from '../../common/dev-server';
import { projectRoot } from '../../common/project-paths';

/** Azurite's documented development account; not a secret, it is the same in every Azurite install. */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_ACCOUNT_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface AzuriteServer {
  /** Blob endpoint including the account, e.g. `http://127.0.0.1:41234/devstoreaccount1`. */
  blobEndpoint: string;
  accountName: string;
  accountKey: string;
  connectionString: string;
  serviceClient(): BlobServiceClient;
  stop(): Promise<void>;
}

/**
 * Starts Azurite's blob service (npm package `azurite`) on a free loopback port, in memory, with telemetry off.
 * Resolves once it accepts connections.
 */
export async function startAzurite(): Promise<AzuriteServer> {
  const port = await freePort();
  const logDir = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-azurite-'));
  const log = openSync(path.join(logDir, 'azurite.log'), 'a');
  const child = spawn(
    path.join(projectRoot(), 'node_modules', '.bin', 'azurite-blob'),
    // No --location: Azurite 3.37 exits with an error when it is given together with --inMemoryPersistence.
    ['--blobHost', '127.0.0.1', '--blobPort', String(port), '--inMemoryPersistence', '--disableTelemetry', '--silent', '--skipApiVersionCheck'],
    { stdio: ['ignore', log, log] },
  );
  closeSync(log);
  let exited = false;
  child.once('exit', () => (exited = true));

  const deadline = Date.now() + 30_000;
  while (!(await isPortInUse('127.0.0.1', port))) {
    if (exited || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`Azurite did not start on port ${port}; see ${path.join(logDir, 'azurite.log')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  const blobEndpoint = `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`;
  return {
    blobEndpoint,
    accountName: AZURITE_ACCOUNT,
    accountKey: AZURITE_ACCOUNT_KEY,
    connectionString: `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_ACCOUNT_KEY};BlobEndpoint=${blobEndpoint};`,
    serviceClient: () => new BlobServiceClient(blobEndpoint, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_ACCOUNT_KEY)),
    stop: async () => {
      if (exited) return;
      const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      await done;
    },
  };
}
