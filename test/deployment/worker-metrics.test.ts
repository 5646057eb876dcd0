import net from 'node:net';
import { WorkflowFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { freePort } from '../../common/dev-server';
import { connectToSharedDevServer, uniqueTaskQueue } from '../support/temporal-env';
import { startWorkerProcess, type WorkerProcess } from './worker-process';

// The worker process as users run it, with AMLBATCH_METRICS_BIND_ADDRESS set: its Prometheus endpoint must serve
// the SDK's `temporal_` series for the worker's own task queue, and a SIGTERM must drain it and exit cleanly.

let env: TestWorkflowEnvironment;

beforeAll(async () => {
  env = await connectToSharedDevServer();
});

afterAll(async () => {
  await env?.teardown();
});

/** Reads `/metrics` until a line matches `pattern`, because counters appear only after the worker records them. */
async function scrapeUntil(url: string, pattern: RegExp, timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const response = await fetch(url);
    expect(response.status).toBe(200);
    const body = await response.text();
    if (pattern.test(body)) return body;
    if (Date.now() > deadline) {
      throw new Error(`no line of ${url} matched ${pattern} within ${timeoutMs / 1000} s; last body:\n${body}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

describe('worker metrics endpoint', () => {
  let worker: WorkerProcess | undefined;

  afterEach(async () => {
    await worker?.stop();
    worker = undefined;
  });

  test('serves temporal_ series and drains on SIGTERM', async () => {
    const taskQueue = uniqueTaskQueue('metrics');
    const port = await freePort();
    worker = startWorkerProcess(
      { AMLBATCH_TASK_QUEUE: taskQueue, AMLBATCH_METRICS_BIND_ADDRESS: `127.0.0.1:${port}`, AMLBATCH_LOG_LEVEL: 'INFO' },
      'worker-metrics',
    );
    const serving = await worker.waitForLog('Serving Prometheus metrics');
    expect(serving.url).toBe(`http://127.0.0.1:${port}/metrics`);
    await worker.waitForLog('Worker started');

    // An invalid input fails the batch in its first workflow task, so the worker records a finished workflow
    // without running any Python.
    const run = env.client.workflow.execute('batchScoring', {
      taskQueue,
      workflowId: uniqueTaskQueue('metrics-batch'),
      args: [{ inputFolder: 5 }],
    });
    await expect(run).rejects.toBeInstanceOf(WorkflowFailedError);

    const queueLabel = `task_queue="${taskQueue}"`;
    const failedSeries = new RegExp(`^temporal_workflow_failed\\{[^}]*${queueLabel}`, 'm');
    const body = await scrapeUntil(`http://127.0.0.1:${port}/metrics`, failedSeries);
    const series = body.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
    expect(series.length).toBeGreaterThan(0);
    expect(series.filter((line) => !line.startsWith('temporal_'))).toEqual([]);

    const failed = series.find((line) => line.startsWith('temporal_workflow_failed{') && line.includes(queueLabel));
    expect(failed).toContain('workflow_type="batchScoring"');
    expect(failed).toMatch(/ 1$/);
    const slots = series.filter((line) => line.startsWith('temporal_worker_task_slots_available{') && line.includes(queueLabel));
    expect(slots.some((line) => line.includes('worker_type="WorkflowWorker"'))).toBe(true);
    expect(slots.some((line) => line.includes('worker_type="ActivityWorker"'))).toBe(true);
    const waits = series.filter((line) => line.startsWith('temporal_workflow_task_schedule_to_start_latency_count{'));
    expect(waits.some((line) => line.includes(queueLabel))).toBe(true);

    const exitCode = await worker.stop();
    expect(exitCode).toBe(0);
    const logMessages = worker.output();
    expect(logMessages).toContain('"message":"Worker stopped"');
  });

  test('host name bind address is rejected', async () => {
    worker = startWorkerProcess(
      { AMLBATCH_TASK_QUEUE: uniqueTaskQueue('metrics'), AMLBATCH_METRICS_BIND_ADDRESS: 'localhost:9464' },
      'worker-metrics-invalid',
    );

    const exitCode = await worker.exited;

    expect(exitCode).toBe(1);
    expect(worker.output()).toContain('AMLBATCH_METRICS_BIND_ADDRESS=localhost:9464 is invalid');
    expect(worker.output()).toContain('0.0.0.0:9464');
  });

  test('port in use fails with the variable named', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as net.AddressInfo;
    try {
      worker = startWorkerProcess(
        { AMLBATCH_TASK_QUEUE: uniqueTaskQueue('metrics'), AMLBATCH_METRICS_BIND_ADDRESS: `127.0.0.1:${port}` },
        'worker-metrics-port-in-use',
      );

      const exitCode = await worker.exited;

      expect(exitCode).toBe(1);
      expect(worker.output()).toContain(`cannot serve Prometheus metrics on AMLBATCH_METRICS_BIND_ADDRESS=127.0.0.1:${port}`);
      expect(worker.output()).toContain('choose a free port');
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});
