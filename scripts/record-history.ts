/**
 * Records the event histories of finished `batchScoring` runs as JSON files for the replay tests in
 * test/durability/. Each scenario runs one real batch with the current workflow code, a real worker and the local
 * backend, on a Temporal dev server that this script starts on a free loopback port and stops at the end.
 *
 *   node dist/scripts/record-history.js --label v2 [--out test/histories] [scenario ...]
 *
 * A file is named `<scenario>-<label>.json`, which is also the workflow id of the recorded run, so the replay test
 * passes the real id to `Worker.runReplayHistory`. The format is the one `temporal workflow show --output json`
 * writes. Record new files after every release of the workflow code and keep the old ones: replaying them proves
 * that running batches started by the previous code still finish on the new code.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { NativeConnection, Runtime, DefaultLogger } from '@temporalio/worker';
import { loadConfig, WORKFLOW_TYPE } from '../common/config';
import { startDevServerOnFreePort, temporalCliPath } from '../common/dev-server';
import { projectRoot } from '../common/project-paths';
import { createBatchWorker } from '../worker/create-worker';
import { RECORDING_SCENARIOS, type RecordingContext } from './history-scenarios';

interface Arguments {
  label: string;
  outFolder: string;
  scenarios: string[];
}

function parseArguments(argv: string[]): Arguments {
  let label: string | undefined;
  let outFolder = path.join(projectRoot(), 'test', 'histories');
  const scenarios: string[] = [];
  for (let index = 0; index < argv.length; index += 1) {
    const argument = argv[index];
    if (argument === '--label') label = argv[++index];
    else if (argument === '--out') outFolder = path.resolve(argv[++index] ?? '');
    else scenarios.push(argument);
  }
  if (!label || !/^[a-z0-9-]+$/.test(label)) {
    throw new Error(`--label is required: lower-case letters, digits and dashes naming the workflow code version, e.g. --label v2 (got ${label ?? 'nothing'})`);
  }
  const known = Object.keys(RECORDING_SCENARIOS);
  const unknown = scenarios.filter((name) => !known.includes(name));
  if (unknown.length > 0) throw new Error(`unknown scenario ${unknown.join(', ')}; known scenarios are ${known.join(', ')}`);
  return { label, outFolder, scenarios: scenarios.length > 0 ? scenarios : known };
}

async function main(): Promise<void> {
  const args = parseArguments(process.argv.slice(2));
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-record-'));
  const server = await startDevServerOnFreePort({ logFile: path.join(scratch, 'temporal.log') });
  try {
    const connection = await NativeConnection.connect({ address: server.address });
    const clientConnection = await Connection.connect({ address: server.address });
    const client = new Client({ connection: clientConnection });
    const config = {
      ...loadConfig({}, projectRoot()),
      taskQueue: 'amlbatch-record',
      localWorkspaceDir: path.join(scratch, 'workspace'),
    };
    const worker = await createBatchWorker({ connection, namespace: 'default', config, jobPollIntervalMs: 200 });
    const images = sampleImages(12);
    const context: RecordingContext = {
      folderWithImages: (name) => makeFolder(scratch, name, images),
      emptyFolder: (name) => makeFolder(scratch, name),
      codeFolder: (name, script) => {
        const folder = makeFolder(scratch, name);
        writeFileSync(path.join(folder, 'score.py'), script);
        return folder;
      },
    };

    await worker.runUntil(async () => {
      mkdirSync(args.outFolder, { recursive: true });
      for (const name of args.scenarios) {
        const scenario = RECORDING_SCENARIOS[name];
        const workflowId = `${name}-${args.label}`;
        const handle: WorkflowHandle = await client.workflow.start(WORKFLOW_TYPE, {
          taskQueue: config.taskQueue,
          workflowId,
          args: [scenario.input(context)],
        });
        await scenario.drive?.(handle);
        const status = await handle.result().then(
          () => 'COMPLETED',
          async () => (await handle.describe()).status.name,
        );
        // The workflow ends before its worker has reported every task; a history read at once can lack the last events.
        await new Promise((resolve) => setTimeout(resolve, 500));
        if (status !== scenario.expectedStatus) {
          throw new Error(`scenario ${name} ended ${status}, expected ${scenario.expectedStatus}; its history was not written`);
        }
        const file = path.join(args.outFolder, `${workflowId}.json`);
        writeFileSync(file, exportHistory(server.address, workflowId));
        console.log(`Recorded ${name} (${status}) to ${file}`);
      }
    });
    await clientConnection.close();
    await connection.close();
  } finally {
    await server.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * Returns the history as `temporal workflow show --output json` prints it. The SDK's own `historyToJSON` cannot be
 * used: in @temporalio/common 1.24.0 it throws "type must be a Type" because that package and @temporalio/proto
 * each install their own copy of protobufjs.
 */
function exportHistory(address: string, workflowId: string): string {
  return execFileSync(
    temporalCliPath(),
    ['workflow', 'show', '--workflow-id', workflowId, '--address', address, '--namespace', 'default', '--output', 'json'],
    { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  );
}

function sampleImages(count: number): string[] {
  const root = path.join(projectRoot(), 'samples', 'digits');
  const files = readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.join(entry.parentPath, entry.name))
    .sort();
  if (files.length < count) throw new Error(`${root} contains ${files.length} images, fewer than ${count}; run \`node scripts/setup.mjs\``);
  return files.slice(0, count);
}

function makeFolder(scratch: string, name: string, files: string[] = []): string {
  const folder = path.join(scratch, name);
  mkdirSync(folder, { recursive: true });
  for (const file of files) copyFileSync(file, path.join(folder, path.basename(file)));
  return folder;
}

main().catch((error: unknown) => {
  console.error(`record-history failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
