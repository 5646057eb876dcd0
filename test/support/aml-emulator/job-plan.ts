/**
 * Turns a submitted PipelineJob into a local parallel run: resolves its component, code, input and output,
 * downloads the code and input folders from blob storage and builds the local runner's job spec.
 */
import { existsSync } from 'node:fs';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { LocalJobFaults, LocalJobSpec } from '../../../activities/backends/local/runner/job-spec';
import type { BlobLocation } from './blob-storage';
import { DEFAULT_DATASTORE_NAME } from './datastores';
import { resolveParallelRun, type ParallelRunSettings } from './pipeline-contract';
import { splitShellWords } from './shell-words';
import { resolveStorageUri, type UriResolver } from './storage-uris';
import { parseAssetReference } from './workspace';

/** Name of the append_row file in a uri_folder output, as the parallel runtime names it. */
const DEFAULT_APPEND_ROW_FILE = 'parallel_run_step.txt';

/** Everything a local run of the job needs. */
export interface JobPlan {
  settings: ParallelRunSettings;
  /** The local runner's job folder; its name is the job name, as the runner requires. */
  runnerFolder: string;
  spec: LocalJobSpec;
  /** Where the append_row file goes; undefined for summary_only. */
  output?: { uri: string; location: BlobLocation };
}

/** A job that cannot run; the message is the reason written to job_result.txt. */
export class JobPlanError extends Error {
  override readonly name = 'JobPlanError';
}

type Json = Record<string, unknown>;

/**
 * Builds the plan for `properties` (a PipelineJob that passed the PUT checks) and downloads its code and input
 * into `runFolder`. `faults` are the local runner's fault injections that a test requested for this job. Throws
 * `JobPlanError` with the reason when the job cannot run.
 */
export async function prepareJobPlan(
  resolver: UriResolver,
  jobName: string,
  properties: Json,
  runFolder: string,
  pythonExecutable: string,
  faults?: LocalJobFaults,
): Promise<JobPlan> {
  const [node] = Object.values(properties.jobs as Record<string, Json>);
  const component = lookUpAsset(resolver, 'components', String(node.componentId));
  const settings = resolveParallelRun(component.componentSpec as Json, node);
  checkSupported(settings);

  const input = boundInput(properties, node, settings.inputPort);
  const inputLocation = resolveOrFail(resolver, input.uri, `input ${settings.inputPort}`);
  const code = lookUpAsset(resolver, 'codes', settings.code ?? '');
  const codeUri = String(code.codeUri);
  const codeLocation = resolveOrFail(resolver, codeUri, 'code');
  lookUpAsset(resolver, 'environments', settings.environment);
  const output = settings.appendRowPort === undefined ? undefined : outputTarget(resolver, jobName, properties, node, settings.appendRowPort);

  const codeDirectory = path.join(runFolder, 'code');
  const inputRoot = path.join(runFolder, 'input');
  await download(resolver, codeLocation, codeDirectory, `code ${codeUri}`);
  const inputFiles = await download(resolver, inputLocation, inputRoot, `input ${input.uri}`);
  const entryScript = settings.entryScript ?? '';
  if (!existsSync(path.join(codeDirectory, entryScript))) {
    throw new JobPlanError(`entry script ${entryScript} not found in the code folder ${codeUri}; upload it there or fix task.entry_script`);
  }

  const manifestPath = path.join(runFolder, 'manifest.jsonl');
  const manifest: string[] = [];
  for (const relative of inputFiles) {
    const { size } = await stat(path.join(inputRoot, relative));
    manifest.push(`${JSON.stringify({ path: relative, size })}\n`);
  }
  await writeFile(manifestPath, manifest.join(''));

  const runnerFolder = path.join(runFolder, 'runner', jobName);
  await mkdir(path.dirname(runnerFolder), { recursive: true });
  const spec: LocalJobSpec = {
    jobName,
    manifestPath,
    inputRoot,
    codeDirectory,
    entryScript,
    programArguments: programArguments(settings, inputRoot),
    miniBatchSize: Number(settings.miniBatchSize),
    processCount: settings.maxConcurrencyPerInstance * settings.instanceCount,
    runInvocationTimeout: settings.timeoutSeconds,
    maxRetries: settings.maxRetries,
    errorThreshold: settings.errorThreshold,
    miniBatchErrorThreshold: settings.miniBatchErrorThreshold,
    outputAction: output === undefined ? 'summary_only' : 'append_row',
    appendRowFileName: output === undefined ? DEFAULT_APPEND_ROW_FILE : path.posix.basename(output.location.blobPath),
    pythonExecutable,
    environment: settings.environmentVariables,
    ...(faults === undefined ? {} : { faults }),
  };
  return { settings, runnerFolder, spec, ...(output !== undefined ? { output } : {}) };
}

/** Rejects settings that a real parallel job accepts but the local runner cannot run. */
function checkSupported(settings: ParallelRunSettings): void {
  if (settings.taskType !== 'run_function') {
    throw new JobPlanError(`task.type ${settings.taskType} is not run by the emulator; it runs task.type run_function`);
  }
  if (settings.partitionKeys !== undefined) {
    throw new JobPlanError('partition_keys is not run by the emulator; it splits uri_folder inputs into mini-batches of mini_batch_size files');
  }
  if (!/^\d+$/.test(settings.miniBatchSize) || Number(settings.miniBatchSize) < 1) {
    throw new JobPlanError(
      `mini_batch_size ${settings.miniBatchSize} is a size, which applies to mltable inputs; for a uri_folder input use a file count such as "10"`,
    );
  }
  if (settings.entryScript === undefined || settings.entryScript === '') {
    throw new JobPlanError('task.entry_script is missing; a run_function task needs the entry script path relative to task.code');
  }
  if (settings.code === undefined) {
    throw new JobPlanError('task.code is missing; a run_function task needs the code asset that holds its entry script');
  }
}

/** Looks up a versioned asset by reference and returns its properties, or throws naming the reference. */
function lookUpAsset(resolver: UriResolver, kind: 'components' | 'codes' | 'environments', reference: string): Json {
  const parsed = parseAssetReference(resolver.workspace, reference, kind);
  if (parsed === undefined || parsed.kind !== kind) {
    throw new JobPlanError(`${reference} is not a ${kind} version reference of this workspace; use azureml:<ARM id of the version>`);
  }
  const version = resolver.assets.getVersion(kind, parsed.name, parsed.version);
  if (version === undefined) throw new JobPlanError(`${kind} version ${parsed.name}:${parsed.version} is not registered in the workspace`);
  return version.properties;
}

/** Returns the input bound to the component's `input_data` port: the node's own data input or the pipeline input it binds. */
function boundInput(properties: Json, node: Json, port: string): { uri: string } {
  const binding = ((node.inputs ?? {}) as Record<string, Json>)[port];
  if (binding === undefined) throw new JobPlanError(`node input ${port}, which input_data splits into mini-batches, is not bound`);
  let input: Json = binding;
  let type = binding.job_input_type;
  if (binding.job_input_type === 'literal') {
    const parentName = /^\$\{\{parent\.inputs\.([A-Za-z0-9_]+)\}\}$/.exec(String(binding.value))?.[1] ?? '';
    input = ((properties.inputs ?? {}) as Record<string, Json>)[parentName] ?? {};
    type = input.jobInputType;
  }
  if (type !== 'uri_folder') {
    throw new JobPlanError(`input ${port} is of type ${String(type)}; the emulator runs parallel jobs over uri_folder inputs`);
  }
  return { uri: String(input.uri) };
}

/**
 * Returns where the append_row file goes: the output's `uri` for a uri_file output, `<uri>/parallel_run_step.txt` for a
 * uri_folder output.
 */
function outputTarget(resolver: UriResolver, jobName: string, properties: Json, node: Json, port: string): { uri: string; location: BlobLocation } {
  let output = ((node.outputs ?? {}) as Record<string, Json>)[port] ?? {};
  let type = output.job_output_type;
  if (output.type === 'literal') {
    const parentName = /^\$\{\{parent\.outputs\.([A-Za-z0-9_]+)\}\}$/.exec(String(output.value))?.[1] ?? '';
    output = ((properties.outputs ?? {}) as Record<string, Json>)[parentName] ?? {};
    type = output.jobOutputType;
  }
  if (type !== undefined && type !== 'uri_file' && type !== 'uri_folder') {
    throw new JobPlanError(`output ${port} is of type ${JSON.stringify(type)}; append_row_to needs a uri_file or uri_folder output`);
  }
  // NOTE: an output without uri goes to the documented `azureml/<job>/<output>/` folder on the default datastore.
  // Whether the service uses that folder for a pipeline step's append_row output is unconfirmed.
  const folderUri = `azureml://datastores/${DEFAULT_DATASTORE_NAME}/paths/azureml/${jobName}/${port}/`;
  const uri = typeof output.uri === 'string' ? output.uri : folderUri;
  const isFolder = type === 'uri_folder' || typeof output.uri !== 'string';
  const fileUri = isFolder ? `${uri.replace(/\/+$/, '')}/${DEFAULT_APPEND_ROW_FILE}` : uri;
  const location = resolveOrFail(resolver, fileUri, `output ${port}`);
  if (location.blobPath === '' || location.blobPath.endsWith('/')) {
    throw new JobPlanError(`output ${port} URI ${uri} is a folder; a uri_file output needs a file path such as .../scores.txt`);
  }
  return { uri: fileUri, location };
}

function resolveOrFail(resolver: UriResolver, uri: string, what: string): BlobLocation {
  try {
    return resolveStorageUri(resolver, uri);
  } catch (error) {
    throw new JobPlanError(`${what}: ${(error as Error).message}`);
  }
}

async function download(resolver: UriResolver, location: BlobLocation, destination: string, what: string): Promise<string[]> {
  try {
    return await resolver.storage.downloadFolder(location, destination);
  } catch (error) {
    throw new JobPlanError(`could not download ${what}: ${(error as Error).message}`);
  }
}

/**
 * Splits `program_arguments` as a shell would and binds `${{inputs.<input_data port>}}` to the downloaded input
 * folder. Other bindings would need mounted ports the emulator does not provide, so they fail the job.
 */
function programArguments(settings: ParallelRunSettings, inputRoot: string): string[] {
  let words: string[];
  try {
    words = splitShellWords(settings.programArguments);
  } catch (error) {
    throw new JobPlanError((error as Error).message);
  }
  const placeholder = `\${{inputs.${settings.inputPort}}}`;
  return words.map((word) => {
    const bound = word.split(placeholder).join(inputRoot);
    const unbound = /\$\{\{[^}]*\}\}/.exec(bound);
    if (unbound !== null) {
      throw new JobPlanError(`program_arguments binding ${unbound[0]} is not bound by the emulator; it binds only ${placeholder}`);
    }
    return bound;
  });
}
