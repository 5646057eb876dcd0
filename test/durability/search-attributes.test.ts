import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { StageError } from '../../activities/errors';
import { BatchClient, SearchAttributesMissingError } from '../../client/batch-client';
import { loadConfig } from '../../common/config';
import { freePort, startDevServer, temporalCliPath, waitForServer } from '../../common/dev-server';
import { abortSignal } from '../../workflows/messages';
import { AMLBATCH_BACKEND, AMLBATCH_DATASET, AMLBATCH_STAGE } from '../../workflows/search-attributes';
import { connectToSharedDevServer } from '../support/temporal-env';
import { createFakeWorker, failureOf, startBatch, waitForStatus } from './helpers';
import { ScriptedBackend } from './scripted-backend';

// The custom search attributes on the dev server the Jest global setup starts, which registers them: a batch
// upserts its backend, stage and dataset, and a visibility query finds it by them.

let env: TestWorkflowEnvironment;

beforeAll(async () => {
  env = await connectToSharedDevServer();
});

afterAll(async () => {
  await env?.teardown();
});

/** Lists the ids of the batches a visibility query finds, retrying while the index catches up. */
async function findBatches(query: string, expectedId: string): Promise<string[]> {
  let found: string[] = [];
  for (let attempt = 0; attempt < 50 && !found.includes(expectedId); attempt += 1) {
    found = [];
    for await (const execution of env.client.workflow.list({ query })) found.push(execution.workflowId);
    if (!found.includes(expectedId)) await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return found;
}

describe('search attributes', () => {
  test('finished batch found by attributes', async () => {
    const backend = new ScriptedBackend();
    const { worker, taskQueue } = await createFakeWorker(env, backend);

    const attributes = await worker.runUntil(async () => {
      const handle = await startBatch(env, taskQueue, { inputFolder: '/fake/data' });
      await handle.result();
      return (await handle.describe()).typedSearchAttributes;
    });

    expect(attributes.get(AMLBATCH_STAGE)).toBe('completed');
    expect(attributes.get(AMLBATCH_BACKEND)).toBe('local');
    expect(attributes.get(AMLBATCH_DATASET)).toBe('data-fake:v1');
    const found = await findBatches(
      `WorkflowId = "${taskQueue}" AND AmlbatchStage = "completed" AND AmlbatchBackend = "local" AND AmlbatchDataset = "data-fake:v1"`,
      taskQueue,
    );
    expect(found).toEqual([taskQueue]);
  });

  test('waiting batch shows awaiting_operator', async () => {
    const backend = new ScriptedBackend();
    backend.failures.checkVaultAccess = [new StageError('NotFound', 'secret "x" not found')];
    const { worker, taskQueue } = await createFakeWorker(env, backend);

    const { waiting, ended } = await worker.runUntil(async () => {
      const handle = await startBatch(env, taskQueue, { inputFolder: '/fake/data' });
      await waitForStatus(handle, (status) => status.pendingFailure !== undefined, 'a failure waiting for an operator');
      const waitingAttributes = (await handle.describe()).typedSearchAttributes;
      await handle.signal(abortSignal, { reason: 'test cleanup' });
      await failureOf(handle.result());
      return { waiting: waitingAttributes, ended: (await handle.describe()).typedSearchAttributes };
    });

    expect(waiting.get(AMLBATCH_STAGE)).toBe('awaiting_operator');
    expect(ended.get(AMLBATCH_STAGE)).toBe('failed');
    expect(ended.get(AMLBATCH_DATASET)).toBeUndefined();
  });

  test('dev server on old database registers them', async () => {
    const folder = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-old-db-'));
    const dbFile = path.join(folder, 'temporal.sqlite');
    const port = await freePort();
    // A database made by a plain start-dev, as the demo's database from before search attributes was.
    const plain = spawn(temporalCliPath(), ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(port), '--headless', '--db-filename', dbFile], {
      stdio: 'ignore',
    });
    await waitForServer(`127.0.0.1:${port}`, 60_000);
    const plainExited = new Promise((resolve) => plain.once('exit', resolve));
    plain.kill('SIGTERM');
    await plainExited;

    const server = await startDevServer({ port, dbFile, logFile: path.join(folder, 'temporal.log') });
    let registered: string[];
    try {
      const connection = await Connection.connect({ address: server.address });
      const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace: 'default' });
      registered = Object.keys(customAttributes ?? {});
      await connection.close();
    } finally {
      await server.stop();
    }

    expect(registered).toEqual(expect.arrayContaining(['AmlbatchStage', 'AmlbatchBackend', 'AmlbatchDataset']));
  });

  test('start names missing attributes', async () => {
    const namespace = `amlbatch-no-attributes-${Date.now().toString(36)}`;
    await env.connection.workflowService.registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs('1 day') });
    const client = BatchClient.fromClient(new Client({ connection: env.connection, namespace }), loadConfig({}));

    let error: unknown;
    for (let attempt = 0; attempt < 50; attempt += 1) {
      // A new namespace takes a moment to reach every part of the server.
      error = await client.start({ inputFolder: '/fake/data' }, `${namespace}-batch`).then(() => undefined, (caught: unknown) => caught);
      if (error instanceof SearchAttributesMissingError) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }

    expect(error).toBeInstanceOf(SearchAttributesMissingError);
    expect((error as SearchAttributesMissingError).missing.sort()).toEqual(['AmlbatchBackend', 'AmlbatchDataset', 'AmlbatchStage']);
    expect((error as Error).message).toContain(`temporal operator search-attribute create --namespace ${namespace} --name AmlbatchStage --type Keyword`);
  });
});
