/**
 * Workflow history size of the sample batch: `node dist/bench/history-bench.js`.
 *
 * Starts its own Temporal dev server on a free loopback port and a worker in this process, scores the sample folder
 * (`samples/digits`) at two mini-batch sizes, and reports each run's history event count and size in bytes. Both
 * numbers stay the same whatever the number of files, because files and rows never enter the history.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { loadConfig } from '../common/config';
import { startDevServerOnFreePort } from '../common/dev-server';
import { projectRoot } from '../common/project-paths';
import { createBatchWorker } from '../worker/create-worker';
import type { BatchSummary } from '../workflows/summary';

const MINI_BATCH_SIZES = [5, 50];

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-history-bench-'));
  const server = await startDevServerOnFreePort({ logFile: path.join(scratch, 'temporal.log') });
  try {
    const connection = await NativeConnection.connect({ address: server.address });
    const client = new Client({ connection });
    const config = {
      ...loadConfig({}, projectRoot()),
      taskQueue: 'history-bench',
      localWorkspaceDir: path.join(scratch, 'workspace'),
      secretsFile: path.join(projectRoot(), '.amlbatch', 'secrets.json'),
    };
    const worker = await createBatchWorker({ connection, namespace: 'default', config });
    const rows: string[] = ['| Sample batch (360 images) | History events | History size |', '| --- | --- | --- |'];
    await worker.runUntil(async () => {
      for (const miniBatchSize of MINI_BATCH_SIZES) {
        const workflowId = `history-bench-${miniBatchSize}`;
        const summary = (await client.workflow.execute('batchScoring', {
          taskQueue: config.taskQueue,
          workflowId,
          args: [{ inputFolder: path.join(projectRoot(), 'samples', 'digits'), miniBatchSize }],
        })) as BatchSummary;
        const history = await client.workflow.getHandle(workflowId).fetchHistory();
        const bytes = Buffer.byteLength(JSON.stringify(history));
        rows.push(
          `| miniBatchSize ${miniBatchSize}: ${summary.miniBatches?.total ?? 0} mini-batches, ${summary.itemsScored} scored | ${history.events?.length ?? 0} | ${(bytes / 1024).toFixed(1)} KiB (JSON) |`,
        );
      }
    });
    await connection.close();
    process.stdout.write(`${rows.join('\n')}\n`);
  } finally {
    await server.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`history benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
