/**
 * Shared setup of the AML emulator tests: Azurite, the emulator, a real `AzureMachineLearningWorkspaces` client
 * pointed at it, and builders for the assets and pipeline job that amlbatch submits.
 */
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { AccessToken, TokenCredential } from '@azure/identity';
import { AzureMachineLearningWorkspaces, type JobBase } from '@azure/arm-machinelearning';
import { startAzurite, type AzuriteServer } from '../support/azurite';
import { amlSpecFolder, missingSpecFiles, startAmlEmulator, type AmlEmulator, type AmlEmulatorOptions } from '../support/aml-emulator';

/**
 * `describe`, or `describe.skip` with a warning when the OpenAPI spec files that the emulator validates against
 * are absent, as in a clone without the shared reference folder.
 */
export function describeWithSpec(name: string, body: () => void): void {
  const missing = missingSpecFiles();
  if (missing.length === 0) {
    describe(name, body);
    return;
  }
  console.warn(
    `Skipping "${name}": the Azure ML OpenAPI spec folder ${amlSpecFolder()} is missing ${missing.join(', ')}; ` +
      'the AML emulator validates all traffic against these files.',
  );
  describe.skip(name, body);
}

/** A credential that returns a fixed token, valid for an hour; the emulator accepts any bearer token. */
export const testCredential: TokenCredential = {
  getToken: (): Promise<AccessToken> => Promise.resolve({ token: 'emulator-test-token', expiresOnTimestamp: Date.now() + 3_600_000 }),
};

export interface Harness {
  azurite: AzuriteServer;
  emulator: AmlEmulator;
  client: AzureMachineLearningWorkspaces;
  resourceGroup: string;
  workspace: string;
}

/** Starts Azurite and the emulator and builds a client with fast retries. */
export async function startHarness(options: Partial<AmlEmulatorOptions> = {}): Promise<Harness> {
  const azurite = await startAzurite();
  try {
    const emulator = await startAmlEmulator({ storage: azurite, statusStepDelayMs: 100, ...options });
    return { azurite, emulator, client: createClient(emulator), resourceGroup: emulator.resourceGroup, workspace: emulator.workspaceName };
  } catch (error) {
    await azurite.stop();
    throw error;
  }
}

export async function stopHarness(harness: Harness | undefined): Promise<void> {
  await harness?.emulator.stop();
  await harness?.azurite.stop();
}

/**
 * Creates a client for the emulator: its certificate as the trusted CA, the ARM scope (the default would follow the
 * endpoint), and retries with short delays so fault tests stay fast. Throttling still waits for `Retry-After`.
 */
export function createClient(emulator: AmlEmulator, options: { apiVersion?: string; maxRetries?: number } = {}): AzureMachineLearningWorkspaces {
  return new AzureMachineLearningWorkspaces(testCredential, emulator.subscriptionId, {
    endpoint: emulator.endpoint,
    credentialScopes: ['https://management.azure.com/.default'],
    tlsOptions: { ca: emulator.certPem },
    retryOptions: { maxRetries: options.maxRetries ?? 3, retryDelayInMs: 20, maxRetryDelayInMs: 100 },
    ...(options.apiVersion !== undefined ? { apiVersion: options.apiVersion } : {}),
  });
}

/** Uploads every file below `localFolder` for which `include` returns true to `<prefix>/<relative path>`. */
export async function uploadFolder(
  azurite: AzuriteServer,
  container: string,
  prefix: string,
  localFolder: string,
  include: (relativePath: string) => boolean = () => true,
): Promise<string[]> {
  const containerClient = azurite.serviceClient().getContainerClient(container);
  const uploaded: string[] = [];
  const walk = async (relativeFolder: string): Promise<void> => {
    for (const name of readdirSync(path.join(localFolder, relativeFolder)).sort()) {
      const relative = relativeFolder === '' ? name : `${relativeFolder}/${name}`;
      const full = path.join(localFolder, relative);
      if (statSync(full).isDirectory()) {
        await walk(relative);
      } else if (include(relative)) {
        await containerClient.getBlockBlobClient(`${prefix}/${relative}`).uploadFile(full);
        uploaded.push(relative);
      }
    }
  };
  await walk('');
  return uploaded;
}

/** Reads a blob of the emulator's storage account as text. */
export async function readBlobText(azurite: AzuriteServer, container: string, blobPath: string): Promise<string> {
  const buffer = await azurite.serviceClient().getContainerClient(container).getBlobClient(blobPath).downloadToBuffer();
  return buffer.toString('utf8');
}

/** Names of the blobs below `prefix` in `container`. */
export async function listBlobNames(azurite: AzuriteServer, container: string, prefix: string): Promise<string[]> {
  const names: string[] = [];
  for await (const blob of azurite.serviceClient().getContainerClient(container).listBlobsFlat({ prefix })) names.push(blob.name);
  return names.sort();
}

/** Parallel settings of a test component; each can be overridden. */
export interface ComponentSettings {
  entryScript: string;
  programArguments: string;
  miniBatchSize: number;
  maxConcurrencyPerInstance: number;
  errorThreshold: number;
  retrySettings: { max_retries: number; timeout: number };
  environmentVariables: Record<string, string>;
  summaryOnly: boolean;
}

/** ARM ids of the registered assets a job needs. */
export interface RegisteredAssets {
  componentId: string;
  codeId: string;
  environmentId: string;
}

/**
 * Registers a code version for a folder already uploaded to `LocalUpload/<hash>/<folder>` of the default
 * datastore, an environment and a parallel component that runs it, shaped as amlbatch registers them.
 */
export async function registerScoringAssets(
  harness: Harness,
  names: { code: string; component: string; version: string; codeBlobPrefix: string },
  settings: Partial<ComponentSettings> = {},
): Promise<RegisteredAssets> {
  const { client, resourceGroup, workspace, emulator } = harness;
  const datastore = emulator.defaultDatastore;
  const code = await client.codeVersions.createOrUpdate(resourceGroup, workspace, names.code, names.version, {
    properties: { codeUri: `${datastore.blobEndpoint}/${datastore.containerName}/${names.codeBlobPrefix}` },
  });
  const environment = await client.environmentVersions.createOrUpdate(resourceGroup, workspace, 'amlbatch-env', '1', {
    properties: { image: 'mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest', condaFile: 'name: score\ndependencies:\n- python=3.11\n' },
  });
  const component = await client.componentVersions.createOrUpdate(resourceGroup, workspace, names.component, names.version, {
    properties: { componentSpec: parallelComponentSpec(names.component, names.version, code.id ?? '', environment.id ?? '', settings) },
  });
  return { componentId: component.id ?? '', codeId: code.id ?? '', environmentId: environment.id ?? '' };
}

/** Builds the componentSpec amlbatch sends for its parallel scoring component. */
export function parallelComponentSpec(
  name: string,
  version: string,
  codeId: string,
  environmentId: string,
  settings: Partial<ComponentSettings> = {},
): Record<string, unknown> {
  const task: Record<string, unknown> = {
    type: 'run_function',
    code: `azureml:${codeId}`,
    entry_script: settings.entryScript ?? 'score.py',
    environment: `azureml:${environmentId}`,
    program_arguments: settings.programArguments ?? '--input_root ${{inputs.input_data}}',
  };
  if (settings.summaryOnly !== true) task.append_row_to = '${{outputs.scores}}';
  return {
    name,
    version,
    type: 'parallel',
    inputs: { input_data: { type: 'uri_folder' } },
    outputs: { scores: { type: 'uri_file' } },
    input_data: '${{inputs.input_data}}',
    mini_batch_size: String(settings.miniBatchSize ?? 2),
    resources: { instance_count: 1 },
    max_concurrency_per_instance: settings.maxConcurrencyPerInstance ?? 1,
    error_threshold: settings.errorThreshold ?? -1,
    mini_batch_error_threshold: -1,
    logging_level: 'INFO',
    retry_settings: settings.retrySettings ?? { max_retries: 0, timeout: 60 },
    environment_variables: settings.environmentVariables ?? {},
    task,
  };
}

export interface PipelineJobOptions {
  /** Input folder below the default datastore, without a trailing slash. */
  inputFolder: string;
  /** Output file below the default datastore. */
  outputFile: string;
  tags?: Record<string, string>;
  miniBatchSize?: number;
  environmentVariables?: Record<string, string>;
  /**
   * Where the data input and output are declared. `node` puts them on the parallel node, whose free-form dictionary
   * the client sends unchanged. `pipeline` declares them as pipeline inputs and outputs bound by
   * `${{parent.inputs.x}}`, which `@azure/arm-machinelearning` 2.1.1 serializes without their `uri` and `mode`:
   * its discriminator table files uri_folder and uri_file under AssetJobInput/AssetJobOutput, not JobInput/JobOutput.
   * @default 'node'
   */
  dataBinding?: 'node' | 'pipeline';
}

/** Builds the PipelineJob body amlbatch submits: one parallel node reading an input folder and writing an output file. */
export function pipelineJobBody(emulator: AmlEmulator, componentId: string, options: PipelineJobOptions): JobBase {
  const datastore = emulator.defaultDatastore.name;
  const computeId = emulator.computeIds[0];
  const input = { mode: 'ReadOnlyMount', uri: `azureml://datastores/${datastore}/paths/${options.inputFolder}/` };
  const output = { mode: 'ReadWriteMount', uri: `azureml://datastores/${datastore}/paths/${options.outputFile}` };
  const byPipeline = options.dataBinding === 'pipeline';
  const node: Record<string, unknown> = {
    type: 'parallel',
    name: 'score',
    componentId,
    computeId,
    inputs: {
      input_data: byPipeline ? { job_input_type: 'literal', value: '${{parent.inputs.input_data}}' } : { job_input_type: 'uri_folder', ...input },
    },
    outputs: {
      scores: byPipeline ? { type: 'literal', value: '${{parent.outputs.scores}}' } : { job_output_type: 'uri_file', ...output },
    },
    resources: { instance_count: 1 },
    max_concurrency_per_instance: 1,
    mini_batch_size: options.miniBatchSize ?? 2,
    error_threshold: -1,
    mini_batch_error_threshold: -1,
    retry_settings: { max_retries: 0, timeout: 60 },
    logging_level: 'INFO',
    _source: 'REMOTE.WORKSPACE.COMPONENT',
  };
  if (options.environmentVariables !== undefined) node.environment_variables = options.environmentVariables;
  const properties: Record<string, unknown> = {
    jobType: 'Pipeline',
    displayName: 'amlbatch test job',
    experimentName: 'amlbatch-tests',
    tags: options.tags ?? {},
    settings: { default_compute: computeId, continue_on_step_failure: false },
    jobs: { score: node },
  };
  if (byPipeline) {
    properties.inputs = { input_data: { jobInputType: 'uri_folder', ...input } };
    properties.outputs = { scores: { jobOutputType: 'uri_file', ...output } };
  }
  return { properties } as unknown as JobBase;
}

const TERMINAL = new Set(['Completed', 'Failed', 'Canceled']);

/**
 * Polls the job through the client every 100 ms until it reaches a terminal status or `maxPolls` polls have
 * passed, and returns every distinct status seen, in order.
 */
export async function pollJobToEnd(harness: Harness, jobName: string, maxPolls = 900): Promise<string[]> {
  const seen: string[] = [];
  for (let poll = 0; poll < maxPolls; poll += 1) {
    const job = await harness.client.jobs.get(harness.resourceGroup, harness.workspace, jobName);
    const status = job.properties.status ?? 'Unknown';
    if (seen.at(-1) !== status) seen.push(status);
    if (TERMINAL.has(status)) return seen;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`job ${jobName} did not reach a terminal status after ${maxPolls} polls; statuses seen: ${seen.join(', ')}`);
}

/** Returns whether `subsequence` appears in `sequence` in order, not necessarily adjacent. */
export function isSubsequence(subsequence: readonly string[], sequence: readonly string[]): boolean {
  let index = 0;
  for (const item of sequence) if (index < subsequence.length && subsequence[index] === item) index += 1;
  return index === subsequence.length;
}
