import { NativeConnection, Runtime, type DefaultLogger } from '@temporalio/worker';
import { loadConfig, loadTemporalConnectConfig, type AmlbatchConfig } from '../common/config';
import { createBatchWorker } from './create-worker';
import { createJsonLogger } from './logger';

/**
 * Runs an amlbatch worker until SIGINT or SIGTERM. The Temporal connection comes from `TEMPORAL_*` variables or a
 * `temporal.toml` profile (`@temporalio/envconfig`, checked by `loadTemporalConnectConfig`); amlbatch's own settings
 * from `AMLBATCH_*` (`common/config.ts`).
 */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createJsonLogger(config.logLevel);
  installRuntime(config, logger);

  const { connectionOptions, namespace, transport } = loadTemporalConnectConfig();
  const { address } = connectionOptions;
  // Only flags and names are logged: the API key and certificate contents never reach the log.
  logger.info('Connecting to Temporal', { address, namespace, taskQueue: config.taskQueue, ...transport });
  const connection = await NativeConnection.connect(connectionOptions).catch((error: Error) => {
    throw new Error(
      `cannot reach the Temporal server at ${address} (${error.message}); start one with \`npm run demo -- --keep-running\` ` +
        'or set TEMPORAL_ADDRESS, and for a secured server TEMPORAL_API_KEY or the TEMPORAL_TLS_* variables',
      { cause: error },
    );
  });
  try {
    const worker = await createBatchWorker({ connection, namespace, config });
    logger.info('Worker started', {
      taskQueue: config.taskQueue,
      namespace,
      localWorkspace: config.localWorkspaceDir,
      secretsFile: config.secretsFile,
    });
    await worker.run();
    logger.info('Worker stopped', { taskQueue: config.taskQueue });
  } finally {
    await connection.close();
  }
}

/**
 * Installs the SDK runtime before any connection exists, with the JSON logger, graceful shutdown on the first
 * SIGINT/SIGTERM (polling stops, running activities get `shutdownGraceTime`) and, when
 * `AMLBATCH_METRICS_BIND_ADDRESS` is set, a Prometheus endpoint at `http://<address>/metrics`.
 */
function installRuntime(config: AmlbatchConfig, logger: DefaultLogger): void {
  const { metricsBindAddress } = config;
  const metrics = metricsBindAddress !== undefined ? { prometheus: { bindAddress: metricsBindAddress } } : undefined;
  try {
    Runtime.install({
      logger,
      shutdownSignals: ['SIGINT', 'SIGTERM'],
      ...(metrics !== undefined ? { telemetryOptions: { metrics } } : {}),
    });
  } catch (error) {
    if (metricsBindAddress === undefined) throw error;
    throw new Error(
      `cannot serve Prometheus metrics on AMLBATCH_METRICS_BIND_ADDRESS=${metricsBindAddress} (${(error as Error).message}); ` +
        'choose a free port, or unset the variable to run without metrics',
      { cause: error },
    );
  }
  if (metricsBindAddress !== undefined) logger.info('Serving Prometheus metrics', { url: `http://${metricsBindAddress}/metrics` });
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`amlbatch worker failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
