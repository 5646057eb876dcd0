import type { DevServer } from '../../common/dev-server';

export default async function globalTeardown(): Promise<void> {
  await (globalThis as { amlbatchDevServer?: DevServer }).amlbatchDevServer?.stop();
}
