/**
 * `npm run demo`: scores the bundled sample folder through the batchScoring workflow on this machine.
 *
 * Starts a Temporal dev server (with its Web UI) when nothing answers at the configured address, starts a worker,
 * runs one batch with a progress line, prints the summary, the results path and the UI link, and then stops what it
 * started. `--keep-running` leaves the server and worker up so the batch can be browsed in the UI.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, createReadStream, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { loadClientConnectConfig } from '@temporalio/envconfig';
import { BatchClient } from '../client/batch-client';
import { renderProgressLine } from '../client/progress';
import { loadConfig } from '../common/config';
import { isPortInUse, isServerReachable, startDevServer, type DevServer } from '../common/dev-server';
import { compiledModulePath, projectRoot } from '../common/project-paths';
import type { BatchSummary } from '../workflows/summary';

const keepRunning = process.argv.includes('--keep-running');

async function main(): Promise<void> {
  const root = projectRoot();
  // Server database and logs sit next to the local workspace: `.amlbatch/` unless AMLBATCH_LOCAL_WORKSPACE moves it.
  const stateDir = path.dirname(loadConfig(process.env, root).localWorkspaceDir);
  const logDir = path.join(stateDir, 'logs');
  mkdirSync(logDir, { recursive: true });
  const { connectionOptions } = loadClientConnectConfig();
  const address = connectionOptions.address ?? '127.0.0.1:7233';
  process.env.TEMPORAL_ADDRESS = address;

  // Step 1: a Temporal server, ours only when none is there already.
  let server: DevServer | undefined;
  if (await isServerReachable(address)) {
    console.log(`Using the Temporal server at ${address}`);
  } else {
    const { host, port } = parseAddress(address);
    const uiPort = port + 1000;
    if (await isPortInUse(host, uiPort)) throw new Error(`port ${uiPort} for the Temporal Web UI is in use; free it or set TEMPORAL_ADDRESS`);
    console.log(`Starting a Temporal dev server at ${address} (Web UI on port ${uiPort})`);
    server = await startDevServer({
      ip: host,
      port,
      uiPort,
      dbFile: path.join(stateDir, `temporal-dev-${port}.sqlite`),
      logFile: path.join(logDir, 'temporal-server.log'),
    });
    if (!process.env.AMLBATCH_TEMPORAL_UI_URL && server.uiUrl) process.env.AMLBATCH_TEMPORAL_UI_URL = server.uiUrl;
  }

  // Step 2: a worker in its own process, as users run it.
  const worker = startWorker(path.join(logDir, 'worker.log'), root);
  let succeeded: boolean;
  try {
    // Step 3: one batch over the sample folder.
    const client = await BatchClient.connect(loadConfig(process.env, root));
    try {
      const inputFolder = path.join(root, 'samples', 'digits');
      const { workflowId, uiLink } = await client.start({ inputFolder });
      console.log(`Started batch ${workflowId} over ${inputFolder}`);
      await followProgress(client, workflowId);
      const summary = await client.result(workflowId);
      await printSummary(summary, uiLink);
      succeeded = summary.itemsTotal > 0 && summary.itemsScored === summary.itemsTotal;
      if (!succeeded) console.error(`Not every image was scored; see the summary above and ${path.join(logDir, 'worker.log')}`);
    } finally {
      await client.close();
    }
  } finally {
    if (keepRunning) {
      console.log(`Left running: worker (pid ${worker.pid})${server ? ` and Temporal dev server (pid ${server.process.pid})` : ''}.`);
      console.log(`Stop them with: kill ${[worker.pid, server?.process.pid].filter(Boolean).join(' ')}`);
    } else {
      await stopProcess(worker);
      await server?.stop();
    }
  }
  if (!succeeded) process.exitCode = 1;
}

function startWorker(logFile: string, root: string): ChildProcess {
  const log = openSync(logFile, 'a');
  const child = spawn(process.execPath, [compiledModulePath('worker/main')], {
    cwd: root,
    env: process.env,
    stdio: ['ignore', log, log],
    detached: keepRunning,
  });
  closeSync(log);
  if (keepRunning) child.unref();
  return child;
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(timer);
}

async function followProgress(client: BatchClient, workflowId: string): Promise<void> {
  let last = '';
  for (;;) {
    const description = await client.describe(workflowId);
    if (description.status !== 'RUNNING') return;
    const line = renderProgressLine(description);
    if (line !== last) console.log(line);
    last = line;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

async function printSummary(summary: BatchSummary, uiLink: string): Promise<void> {
  console.log('');
  console.log(`Items: ${summary.itemsTotal} total, ${summary.itemsScored} scored, ${summary.itemsFailed} failed`);
  if (summary.ledger) {
    const { ledger } = summary;
    console.log(
      `Ledger: ${ledger.scored} scored, ${ledger.failed} failed, ${ledger.excluded} excluded, ` +
        `${ledger.duplicateRows} duplicate rows collapsed, ${ledger.unknownRows} unknown rows (${ledger.ledgerFile})`,
    );
  }
  if (summary.resultsFile) {
    console.log(`Accuracy against the folder labels: ${(await sampleAccuracy(summary.resultsFile)).toFixed(3)}`);
    console.log(`Results: ${summary.resultsFile}`);
  }
  for (const stage of summary.stages) {
    const duration = stage.durationMs === undefined ? '' : ` ${stage.durationMs} ms`;
    console.log(`  ${stage.stage.padEnd(18)} ${stage.state.padEnd(10)}${duration}`);
  }
  console.log(`Temporal UI: ${uiLink}`);
  console.log(`Summary JSON: ${JSON.stringify(summary)}`);
}

/** Compares each row's predicted label with the name of the sub-folder the image sits in. */
async function sampleAccuracy(resultsFile: string): Promise<number> {
  let total = 0;
  let correct = 0;
  for await (const line of createInterface({ input: createReadStream(resultsFile), crlfDelay: Infinity })) {
    const row = JSON.parse(line) as { path: string; label: number | null };
    total += 1;
    if (String(row.label) === row.path.split('/')[0]) correct += 1;
  }
  return total === 0 ? 0 : correct / total;
}

function parseAddress(address: string): { host: string; port: number } {
  const match = /^(.*):(\d+)$/.exec(address);
  if (!match) throw new Error(`TEMPORAL_ADDRESS=${address} is not host:port`);
  const host = match[1] === 'localhost' ? '127.0.0.1' : match[1];
  return { host, port: Number(match[2]) };
}

main().catch((error: unknown) => {
  console.error(`demo failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
