import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { ManagedIdentityCredential, type TokenCredential } from '@azure/identity';
import { SecretClient } from '@azure/keyvault-secrets';
import { projectRoot } from '../../common/project-paths';
import type { KeyVaultDoubleCoordinates } from './key-vault-double/server';

export type { KeyVaultDoubleCoordinates } from './key-vault-double/server';

/** Time the double may take to print its coordinates. It took 0.6 s on an idle two-core machine. */
const START_TIMEOUT_MS = 30_000;

/**
 * App Service managed identity variables. Both @azure/identity and azure-identity (Python) prefer them to the
 * `MSI_*` variables of Azure ML compute, so they are removed wherever the simulated Azure ML identity is applied.
 */
const APP_SERVICE_IDENTITY_VARIABLES = ['IDENTITY_ENDPOINT', 'IDENTITY_HEADER', 'IDENTITY_SERVER_THUMBPRINT', 'IMDS_ENDPOINT'];

/** A Key Vault test double and ready-made clients for it. */
export interface TestKeyVault extends KeyVaultDoubleCoordinates {
  /** The vault's self-signed certificate, for `tlsOptions: { ca }`. */
  caCertPem: string;
  /**
   * Environment of a process on the simulated Azure ML compute: `MSI_ENDPOINT`, `MSI_SECRET` and
   * `DEFAULT_IDENTITY_CLIENT_ID`. Pass it to child processes (Python) that read the vault.
   */
  managedIdentityEnvironment: Record<string, string>;
  /**
   * Returns a real `ManagedIdentityCredential` for the compute's identity, or for the user-assigned identity with
   * `clientId`. It first copies {@link managedIdentityEnvironment} into `process.env`, because @azure/identity reads
   * the token endpoint only from the environment.
   */
  credential(clientId?: string): TokenCredential;
  /** Returns a SecretClient that trusts the vault's certificate and authenticates as `clientId` (default: reader). */
  secretClient(clientId?: string): SecretClient;
  /** Sets a secret as the administrator identity. With `enabled: false` the secret is stored disabled. */
  setSecret(name: string, value: string, options?: { enabled?: boolean }): Promise<void>;
}

/** A double this process started. */
export interface StartedTestKeyVault extends TestKeyVault {
  stop(): Promise<void>;
}

/** Builds clients for a double that is already running, from its coordinates. */
export function connectTestKeyVault(coordinates: KeyVaultDoubleCoordinates): TestKeyVault {
  const caCertPem = readFileSync(coordinates.caCertPath, 'utf8');
  const managedIdentityEnvironment = {
    MSI_ENDPOINT: coordinates.managedIdentityEndpoint,
    MSI_SECRET: coordinates.managedIdentityHeader,
    DEFAULT_IDENTITY_CLIENT_ID: coordinates.identities.reader,
  };

  const credential = (clientId?: string): TokenCredential => {
    for (const name of APP_SERVICE_IDENTITY_VARIABLES) delete process.env[name];
    Object.assign(process.env, managedIdentityEnvironment);
    return clientId ? new ManagedIdentityCredential({ clientId }) : new ManagedIdentityCredential();
  };
  const secretClient = (clientId?: string): SecretClient =>
    new SecretClient(coordinates.vaultUrl, credential(clientId), {
      tlsOptions: { ca: caCertPem },
      // The challenge names vault.azure.net while the double runs on 127.0.0.1, as any local vault must.
      disableChallengeResourceVerification: true,
      retryOptions: { maxRetries: 0 },
    });

  return {
    ...coordinates,
    caCertPem,
    managedIdentityEnvironment,
    credential,
    secretClient,
    setSecret: async (name, value, options = {}) => {
      await secretClient(coordinates.identities.administrator).setSecret(name, value, { enabled: options.enabled ?? true });
    },
  };
}

/**
 * Starts the Key Vault test double (test/support/key-vault-double) as a child process and resolves once it
 * listens. It runs the compiled program from dist/, so `npm run build` or `node scripts/setup.mjs` must have run
 * after the last change to its sources. Its log goes to `logFile`.
 */
export async function startTestKeyVault(options: { logFile: string }): Promise<StartedTestKeyVault> {
  const program = compiledDoublePath();
  mkdirSync(path.dirname(options.logFile), { recursive: true });
  const log = openSync(options.logFile, 'a');
  const child = spawn(process.execPath, [program], { stdio: ['pipe', 'pipe', log] });
  closeSync(log);

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

  let coordinates: KeyVaultDoubleCoordinates;
  try {
    // stdio[1] is 'pipe', so stdout is set.
    coordinates = await readCoordinates(child.stdout!);
  } catch (error) {
    await stop();
    throw new Error(`Key Vault test double did not start: ${(error as Error).message}; see ${options.logFile}`, { cause: error });
  }
  return { ...connectTestKeyVault(coordinates), stop };
}

/** Returns the compiled double's path, and throws when it is missing or older than its TypeScript sources. */
function compiledDoublePath(): string {
  const root = projectRoot();
  const program = path.join(root, 'dist', 'test', 'support', 'key-vault-double', 'main.js');
  if (!existsSync(program)) {
    throw new Error(`${program} is missing; run \`node scripts/setup.mjs\` (or \`npm run build\`) to compile the Key Vault test double`);
  }
  // Each source is compared with its own output, because an incremental build emits only the files that changed.
  for (const moduleName of ['main', 'server']) {
    const sourcePath = path.join(root, 'test', 'support', 'key-vault-double', `${moduleName}.ts`);
    const compiledPath = path.join(path.dirname(program), `${moduleName}.js`);
    if (!existsSync(compiledPath) || statSync(sourcePath).mtimeMs > statSync(compiledPath).mtimeMs) {
      throw new Error(`${compiledPath} is missing or older than ${sourcePath}; run \`npm run build\` to compile the Key Vault test double again`);
    }
  }
  return program;
}

function readCoordinates(stdout: NodeJS.ReadableStream): Promise<KeyVaultDoubleCoordinates> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: stdout });
    let settled = false;
    const settle = (action: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      lines.close();
      // Keep draining stdout, so the child never blocks on a full pipe.
      stdout.resume();
      action();
    };
    const timer = setTimeout(() => settle(() => reject(new Error(`no coordinates within ${START_TIMEOUT_MS / 1000} s`))), START_TIMEOUT_MS);

    lines.once('line', (line) =>
      settle(() => {
        try {
          resolve(JSON.parse(line) as KeyVaultDoubleCoordinates);
        } catch {
          reject(new Error(`its first output line is not JSON: ${line.slice(0, 200)}`));
        }
      }),
    );
    lines.once('close', () => settle(() => reject(new Error('the process exited before printing its coordinates'))));
  });
}
