import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { loadClientConfigProfile, toClientOptions, type ClientConfigProfile, type ClientConnectConfig } from '@temporalio/envconfig';

/**
 * amlbatch's own settings, read from the environment in this one place by both the worker and the CLI. Temporal's
 * connection settings (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, TLS, API key) are read by `@temporalio/envconfig`.
 */
export interface AmlbatchConfig {
  /** Task queue the worker polls and the CLI starts batches on. Env `AMLBATCH_TASK_QUEUE`. @default 'amlbatch' */
  taskQueue: string;
  /** Local backend workspace folder. Env `AMLBATCH_LOCAL_WORKSPACE`. @default `<cwd>/.amlbatch/workspace` */
  localWorkspaceDir: string;
  /** Local secret source file. Env `AMLBATCH_SECRETS_FILE`. @default `<cwd>/.amlbatch/secrets.json` */
  secretsFile: string;
  /** Base URL of the Temporal Web UI, for links. Env `AMLBATCH_TEMPORAL_UI_URL`. @default 'http://localhost:8233' */
  temporalUiUrl: string;
  /** Worker log level. Env `AMLBATCH_LOG_LEVEL`: TRACE, DEBUG, INFO, WARN or ERROR. @default 'INFO' */
  logLevel: LogLevel;
  /**
   * Address (`ip:port`) where the worker serves Prometheus metrics at `/metrics`, such as `0.0.0.0:9464`. Env
   * `AMLBATCH_METRICS_BIND_ADDRESS`. @default undefined: no metrics endpoint, so a worker opens no port unless asked
   */
  metricsBindAddress?: string;
}

export const LOG_LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The workflow type name, as typed in the Temporal UI's Start Workflow form. */
export const WORKFLOW_TYPE = 'batchScoring';

/** Every environment variable amlbatch reads itself, for docs and for checks of deployment files. */
export const AMLBATCH_ENVIRONMENT_VARIABLES = [
  'AMLBATCH_TASK_QUEUE',
  'AMLBATCH_LOCAL_WORKSPACE',
  'AMLBATCH_SECRETS_FILE',
  'AMLBATCH_TEMPORAL_UI_URL',
  'AMLBATCH_LOG_LEVEL',
  'AMLBATCH_PYTHON',
  'AMLBATCH_METRICS_BIND_ADDRESS',
] as const;

export function loadConfig(environment: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): AmlbatchConfig {
  const logLevel = (environment.AMLBATCH_LOG_LEVEL ?? 'INFO').toUpperCase();
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new TypeError(`AMLBATCH_LOG_LEVEL=${environment.AMLBATCH_LOG_LEVEL} is invalid; use one of ${LOG_LEVELS.join(', ')}`);
  }
  return {
    taskQueue: nonEmpty(environment.AMLBATCH_TASK_QUEUE) ?? 'amlbatch',
    localWorkspaceDir: path.resolve(cwd, nonEmpty(environment.AMLBATCH_LOCAL_WORKSPACE) ?? '.amlbatch/workspace'),
    secretsFile: path.resolve(cwd, nonEmpty(environment.AMLBATCH_SECRETS_FILE) ?? '.amlbatch/secrets.json'),
    temporalUiUrl: (nonEmpty(environment.AMLBATCH_TEMPORAL_UI_URL) ?? 'http://localhost:8233').replace(/\/+$/, ''),
    logLevel: logLevel as LogLevel,
    ...metricsBindAddressSetting(environment.AMLBATCH_METRICS_BIND_ADDRESS),
  };
}

/** Returns the Temporal UI page of one workflow execution. */
export function workflowUiLink(config: Pick<AmlbatchConfig, 'temporalUiUrl'>, namespace: string, workflowId: string): string {
  return `${config.temporalUiUrl}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value;
}

function metricsBindAddressSetting(value: string | undefined): Pick<AmlbatchConfig, 'metricsBindAddress'> {
  const address = nonEmpty(value)?.trim();
  if (address === undefined) return {};
  if (!isSocketAddress(address)) {
    throw new TypeError(
      `AMLBATCH_METRICS_BIND_ADDRESS=${value} is invalid; use an IP address and port such as 0.0.0.0:9464, ` +
        '127.0.0.1:9464 or [::]:9464 (host names are not accepted), or leave it unset to serve no metrics',
    );
  }
  return { metricsBindAddress: address };
}

/** Returns whether `value` is `ipv4:port` or `[ipv6]:port` with a port from 1 to 65535, as Temporal's Rust core parses it. */
function isSocketAddress(value: string): boolean {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  if (!match) return false;
  const port = Number(match[3]);
  if (port < 1 || port > 65535) return false;
  return match[1] !== undefined ? net.isIPv6(match[1]) : net.isIPv4(match[2]);
}

/** The Temporal connection of the worker and the CLI, after the checks of `loadTemporalConnectConfig`. */
export interface TemporalConnectConfig {
  /** Options for `NativeConnection.connect` (worker) or `Connection.connect` (client), with `address` always set. */
  connectionOptions: ClientConnectConfig['connectionOptions'] & { address: string };
  /** Env `TEMPORAL_NAMESPACE` or the profile's `namespace`. @default 'default' */
  namespace: string;
  /** Transport summary for logs: flags and names only, never the API key or key material. */
  transport: { tls: boolean; clientCertificate: boolean; apiKey: boolean; serverName?: string };
}

/** The TLS variables whose value `@temporalio/envconfig` reads as a file path, for messages about unreadable files. */
const TLS_PATH_VARIABLES = {
  clientCert: 'TEMPORAL_TLS_CLIENT_CERT_PATH',
  clientKey: 'TEMPORAL_TLS_CLIENT_KEY_PATH',
  serverCACert: 'TEMPORAL_TLS_SERVER_CA_CERT_PATH',
} as const;

/**
 * Reads the Temporal connection settings the way the Temporal CLI and SDKs do, with `@temporalio/envconfig`: the
 * profile `TEMPORAL_PROFILE` (default `default`) of the TOML file `TEMPORAL_CONFIG_FILE` (default
 * `~/.config/temporalio/temporal.toml`), overridden by `TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`,
 * `TEMPORAL_TLS`, `TEMPORAL_TLS_CLIENT_CERT_PATH|_DATA`, `TEMPORAL_TLS_CLIENT_KEY_PATH|_DATA`,
 * `TEMPORAL_TLS_SERVER_CA_CERT_PATH|_DATA`, `TEMPORAL_TLS_SERVER_NAME` and `TEMPORAL_GRPC_META_<HEADER>`.
 * An API key or any TLS setting turns TLS on unless `TEMPORAL_TLS=false`.
 *
 * Where envconfig would silently connect differently from what was requested, throws a `TypeError` that names the
 * setting and the fix. Those cases are a client certificate without its key (or the reverse), a `TEMPORAL_TLS`
 * value other than true, false, 1 or 0, a `TEMPORAL_CONFIG_FILE` or certificate file that cannot be read, and
 * `TEMPORAL_TLS_DISABLE_HOST_VERIFICATION`, which the TypeScript SDK cannot honour.
 * NOTE: `disable_host_verification` in a TOML profile is not checked; envconfig drops it without a word.
 */
export function loadTemporalConnectConfig(environment: NodeJS.ProcessEnv = process.env): TemporalConnectConfig {
  const tlsSwitch = environment.TEMPORAL_TLS;
  if (tlsSwitch !== undefined && !['true', 'false', '1', '0'].includes(tlsSwitch)) {
    // envconfig reads every value but "true" and "1" as false, so "TRUE" or "yes" would silently turn TLS off.
    throw new TypeError(`TEMPORAL_TLS=${tlsSwitch} is invalid; use true or false (or 1 or 0)`);
  }
  const disableHostVerification = environment.TEMPORAL_TLS_DISABLE_HOST_VERIFICATION;
  if (disableHostVerification === 'true' || disableHostVerification === '1') {
    throw new TypeError(
      `TEMPORAL_TLS_DISABLE_HOST_VERIFICATION=${disableHostVerification} is not supported by the Temporal TypeScript SDK; ` +
        "set TEMPORAL_TLS_SERVER_NAME to the host name in the server's certificate and TEMPORAL_TLS_SERVER_CA_CERT_PATH " +
        'to the CA that signed it instead',
    );
  }

  const configFile = nonEmpty(environment.TEMPORAL_CONFIG_FILE);
  if (configFile !== undefined && !isReadableFile(configFile)) {
    // envconfig treats a missing file as empty, which would quietly connect to localhost instead of the profile's server.
    throw new TypeError(`TEMPORAL_CONFIG_FILE=${configFile} cannot be read; point it at a temporal.toml file or unset it`);
  }

  const profile = loadClientConfigProfile({ overrideEnvVars: definedValues(environment) });
  checkTlsFiles(profile);
  const { connectionOptions, namespace } = toClientOptions(profile);
  const address = connectionOptions.address ?? 'localhost:7233';
  const tls = connectionOptions.tls;
  const tlsOptions = typeof tls === 'object' && tls !== null ? tls : undefined;
  return {
    connectionOptions: { ...connectionOptions, address },
    namespace: namespace ?? 'default',
    transport: {
      tls: tls !== undefined && tls !== null && tls !== false,
      clientCertificate: tlsOptions?.clientCertPair !== undefined,
      apiKey: connectionOptions.apiKey !== undefined,
      ...(tlsOptions?.serverNameOverride !== undefined ? { serverName: tlsOptions.serverNameOverride } : {}),
    },
  };
}

function checkTlsFiles(profile: ClientConfigProfile): void {
  const tls = profile.tls;
  if (tls === undefined || tls.disabled === true) return;
  if ((tls.clientCert === undefined) !== (tls.clientKey === undefined)) {
    const [given, missing] =
      tls.clientCert !== undefined
        ? ['a client certificate', 'TEMPORAL_TLS_CLIENT_KEY_PATH (or TEMPORAL_TLS_CLIENT_KEY_DATA, or client_key_path in the profile)']
        : ['a client key', 'TEMPORAL_TLS_CLIENT_CERT_PATH (or TEMPORAL_TLS_CLIENT_CERT_DATA, or client_cert_path in the profile)'];
    throw new TypeError(`mTLS needs both a client certificate and its key, but only ${given} is set; also set ${missing}`);
  }
  for (const field of ['clientCert', 'clientKey', 'serverCACert'] as const) {
    const source = tls[field];
    if (source === undefined || !('path' in source)) continue;
    try {
      readFileSync(source.path);
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      throw new TypeError(
        `${TLS_PATH_VARIABLES[field]} (or its profile setting) names ${source.path}, which cannot be read (${reason}); ` +
          'point it at a readable PEM file',
        { cause: error },
      );
    }
  }
}

function isReadableFile(file: string): boolean {
  try {
    readFileSync(file);
    return true;
  } catch {
    return false;
  }
}

/** Drops unset variables, because envconfig's `overrideEnvVars` takes string values only. */
function definedValues(environment: NodeJS.ProcessEnv): Record<string, string> {
  const values: Record<string, string> = {};
  for (const [name, value] of Object.entries(environment)) if (value !== undefined) values[name] = value;
  return values;
}
