import path from 'node:path';

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
  };
}

/** Returns the Temporal UI page of one workflow execution. */
export function workflowUiLink(config: Pick<AmlbatchConfig, 'temporalUiUrl'>, namespace: string, workflowId: string): string {
  return `${config.temporalUiUrl}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value;
}
