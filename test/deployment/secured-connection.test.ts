import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { type ApplicationFailure, WorkflowFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { compiledModulePath, projectRoot } from '../../common/project-paths';
import { connectToSharedDevServer, uniqueTaskQueue } from '../support/temporal-env';
import { createTestPki, type TestPki } from './test-pki';
import { startWorkerProcess, type WorkerProcess } from './worker-process';

// The worker and the CLI against a server that requires mutual TLS. The dev server speaks plaintext only, so a
// TLS-terminating proxy on loopback runs in front of it. The proxy requires a client certificate signed by the test
// CA, negotiates HTTP/2 (ALPN "h2", as gRPC needs) and passes the decrypted bytes to the shared dev server.

interface MutualTlsProxy {
  address: string;
  /** Common names of the client certificates of accepted connections. */
  acceptedClients: string[];
  /** TLS handshakes the proxy refused, such as a client without a certificate. */
  rejectedHandshakes: number;
  close(): Promise<void>;
}

async function startMutualTlsProxy(pki: TestPki, upstream: string): Promise<MutualTlsProxy> {
  const [upstreamHost, upstreamPort] = upstream.split(':') as [string, string];
  const sockets = new Set<net.Socket>();
  const proxy: Omit<MutualTlsProxy, 'address' | 'close'> = { acceptedClients: [], rejectedHandshakes: 0 };
  const server = tls.createServer(
    {
      key: readFileSync(pki.serverKeyPath),
      cert: readFileSync(pki.serverCertPath),
      ca: readFileSync(pki.caCertPath),
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: ['h2'],
    },
    (socket) => {
      proxy.acceptedClients.push(String(socket.getPeerCertificate().subject?.CN));
      const target = net.connect(Number(upstreamPort), upstreamHost);
      for (const end of [socket, target]) {
        sockets.add(end);
        end.once('close', () => sockets.delete(end));
      }
      socket.pipe(target).pipe(socket);
      socket.on('error', () => target.destroy());
      target.on('error', () => socket.destroy());
    },
  );
  server.on('tlsClientError', () => (proxy.rejectedHandshakes += 1));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return Object.assign(proxy, {
    address: `127.0.0.1:${port}`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  });
}

function runCli(args: string[], environment: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [compiledModulePath('client/cli'), ...args],
      { cwd: projectRoot(), env: { ...process.env, ...environment }, timeout: 60_000 },
      (error, stdout, stderr) => {
        let code = 0;
        if (error) code = typeof error.code === 'number' ? error.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

let env: TestWorkflowEnvironment;
let pki: TestPki;
let proxy: MutualTlsProxy;
/** Variables of a client that trusts the test CA and presents no certificate of its own. */
let serverTrust: Record<string, string>;
/** `serverTrust` plus the client certificate and key. */
let mutualTls: Record<string, string>;

beforeAll(async () => {
  env = await connectToSharedDevServer();
  pki = createTestPki();
  proxy = await startMutualTlsProxy(pki, process.env.TEMPORAL_ADDRESS!);
  serverTrust = {
    TEMPORAL_ADDRESS: proxy.address,
    TEMPORAL_TLS_SERVER_CA_CERT_PATH: pki.caCertPath,
    TEMPORAL_TLS_SERVER_NAME: pki.serverName,
  };
  mutualTls = { ...serverTrust, TEMPORAL_TLS_CLIENT_CERT_PATH: pki.clientCertPath, TEMPORAL_TLS_CLIENT_KEY_PATH: pki.clientKeyPath };
});

afterAll(async () => {
  await proxy?.close();
  await env?.teardown();
});

describe('secured Temporal connection', () => {
  let worker: WorkerProcess | undefined;

  afterEach(async () => {
    await worker?.stop();
    worker = undefined;
  });

  test('CLI lists batches over mTLS', async () => {
    const accepted = proxy.acceptedClients.length;

    const result = await runCli(['list'], mutualTls);

    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(proxy.acceptedClients.slice(accepted)).toContain('amlbatch-test-worker');
  });

  test('CLI without client certificate is rejected', async () => {
    const rejected = proxy.rejectedHandshakes;

    const result = await runCli(['list'], serverTrust);

    expect(result.code).toBe(3);
    expect(result.stderr).toContain(`cannot reach the Temporal server at ${proxy.address}`);
    expect(proxy.rejectedHandshakes).toBeGreaterThan(rejected);
  });

  test('worker polls over mTLS and never logs key material', async () => {
    const taskQueue = uniqueTaskQueue('mtls');
    worker = startWorkerProcess({ ...mutualTls, AMLBATCH_TASK_QUEUE: taskQueue }, 'worker-mtls');

    const connecting = await worker.waitForLog('Connecting to Temporal');
    await worker.waitForLog('Worker started');
    // Started on the plaintext dev server; only a worker polling through the proxy can fail it with InvalidInput.
    const run = env.client.workflow.execute('batchScoring', {
      taskQueue,
      workflowId: uniqueTaskQueue('mtls-batch'),
      args: [{ inputFolder: 5 }],
    });
    const failure = await run.then(
      () => undefined,
      (error: unknown) => error,
    );

    expect(connecting).toMatchObject({
      address: proxy.address,
      tls: true,
      clientCertificate: true,
      apiKey: false,
      serverName: pki.serverName,
    });
    expect(failure).toBeInstanceOf(WorkflowFailedError);
    expect(((failure as WorkflowFailedError).cause as ApplicationFailure).type).toBe('InvalidInput');
    expect(proxy.acceptedClients).toContain('amlbatch-test-worker');
    expect(await worker.stop()).toBe(0);
    expect(worker.output()).not.toContain('PRIVATE KEY');
    expect(worker.output()).not.toContain(readFileSync(pki.clientKeyPath, 'utf8').split('\n')[1]);
  });

  test('worker with an API key logs only that one is set', async () => {
    const apiKey = 'amlbatch-test-api-key-4f1c';
    const taskQueue = uniqueTaskQueue('api-key');
    // The dev server ignores the Authorization header, so plaintext with TEMPORAL_TLS=false reaches it directly.
    worker = startWorkerProcess(
      {
        TEMPORAL_ADDRESS: process.env.TEMPORAL_ADDRESS!,
        TEMPORAL_API_KEY: apiKey,
        TEMPORAL_TLS: 'false',
        AMLBATCH_TASK_QUEUE: taskQueue,
      },
      'worker-api-key',
    );

    const connecting = await worker.waitForLog('Connecting to Temporal');
    await worker.waitForLog('Worker started');

    expect(connecting).toMatchObject({ tls: false, apiKey: true, clientCertificate: false });
    expect(await worker.stop()).toBe(0);
    expect(worker.output()).not.toContain(apiKey);
  });

  test('worker with half a certificate pair names the missing variable', async () => {
    worker = startWorkerProcess({ ...serverTrust, TEMPORAL_TLS_CLIENT_CERT_PATH: pki.clientCertPath }, 'worker-mtls-half');

    const exitCode = await worker.exited;

    expect(exitCode).toBe(1);
    expect(worker.output()).toContain('mTLS needs both a client certificate and its key');
    expect(worker.output()).toContain('also set TEMPORAL_TLS_CLIENT_KEY_PATH');
  });
});
