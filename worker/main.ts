import { loadClientConnectConfig } from '@temporalio/envconfig';
import { NativeConnection, Runtime } from '@temporalio/worker';
import { loadConfig } from '../common/config';
import { createBatchWorker } from './create-worker';
import { createJsonLogger } from './logger';

/**
 * Runs an amlbatch worker until SIGINT or SIGTERM. The Temporal connection comes from `TEMPORAL_*` variables or a
 * `temporal.toml` profile (`@temporalio/envconfig`); amlbatch's own settings from `AMLBATCH_*` (`common/config.ts`).
 */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createJsonLogger(config.logLevel);
  // The first SIGINT/SIGTERM starts a graceful shutdown: polling stops, running tasks get shutdownGraceTime.
  Runtime.install({ logger, shutdownSignals: ['SIGINT', 'SIGTERM'] });

  const { connectionOptions, namespace = 'default' } = loadClientConnectConfig();
  const address = connectionOptions.address ?? 'localhost:7233';
  logger.info('Connecting to Temporal', { address, namespace, taskQueue: config.taskQueue });
  const connection = await NativeConnection.connect(connectionOptions).catch((error: Error) => {
    throw new Error(
      `cannot reach the Temporal server at ${address} (${error.message}); start one with \`npm run demo -- --keep-running\` or set TEMPORAL_ADDRESS`,
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

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`amlbatch worker failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
