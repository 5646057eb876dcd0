import type { DevServer } from '../../common/dev-server';
import type { AzureTestServers } from './azure-test-servers';

export default async function globalTeardown(): Promise<void> {
  const state = globalThis as { amlbatchDevServer?: DevServer; amlbatchAzureTestServers?: AzureTestServers };
  await Promise.all([state.amlbatchDevServer?.stop(), state.amlbatchAzureTestServers?.stop()]);
}
