/**
 * The `batchScoring` workflow's input: one JSON object, because the Temporal UI's Start Workflow form sends
 * exactly one value. Validation is pure and deterministic so the workflow runs it before any stage; the CLI runs
 * the same function before it starts a batch, so a user sees the error without a round trip.
 */

export const BACKENDS = ['local', 'azure'] as const;
export type Backend = (typeof BACKENDS)[number];

export const OUTPUT_ACTIONS = ['append_row', 'summary_only'] as const;
export type OutputActionName = (typeof OUTPUT_ACTIONS)[number];

/**
 * Choices for the datastore registration and dataset version that a batch created, when it fails for good or is
 * cancelled. The scoring job is cancelled either way. Assets that existed before the batch are never touched.
 */
export const ASSETS_ON_FAILURE = ['keep', 'remove_created'] as const;
export type AssetsOnFailure = (typeof ASSETS_ON_FAILURE)[number];

/** The placeholder that Azure ML replaces with the mounted input folder inside `program_arguments`. */
export const INPUT_DATA_PLACEHOLDER = '${{inputs.input_data}}';

/** Ways the Azure backend can reach the blob container that contains the input folder. */
export const DATASTORE_CREDENTIALS = ['identity', 'account_key', 'sas'] as const;
export type DatastoreCredentialKind = (typeof DATASTORE_CREDENTIALS)[number];

/** The Azure Blob datastore a batch reads its input folder from. No key or SAS here: only a Key Vault secret name. */
export interface AzureDatastoreSettings {
  /** Datastore name in the workspace. */
  name: string;
  /** Storage account name. */
  accountName: string;
  /** Blob container name. */
  containerName: string;
  /** `identity` (no stored credential), `account_key` or `sas`. @default 'identity' */
  credential?: DatastoreCredentialKind;
  /** Key Vault secret holding the account key or SAS token; required with `account_key` and `sas`. */
  secretName?: string;
  /** Replace an existing datastore of this name whose settings differ, instead of failing. @default false */
  allowUpdate?: boolean;
}

/** Settings of a batch on Azure Machine Learning (`backend: "azure"`). */
export interface AzureBatchSettings {
  /** @default from `.azureml/config.json` or `AZUREML_SUBSCRIPTION_ID` */
  subscriptionId?: string;
  /** @default from `.azureml/config.json` or `AZUREML_RESOURCE_GROUP` */
  resourceGroup?: string;
  /** @default from `.azureml/config.json` or `AZUREML_WORKSPACE_NAME` */
  workspaceName?: string;
  /** Name of the compute cluster that runs the parallel job. */
  compute: string;
  /** Nodes of the compute cluster the job uses. @default 1 */
  instanceCount?: number;
  /** Key Vault URL holding the batch's secrets. @default the workspace's Key Vault */
  keyVaultUrl?: string;
  datastore: AzureDatastoreSettings;
  /**
   * Docker base image plus a conda file (relative to `codeDirectory`), or the id of an existing environment such as
   * a curated one. @default image `mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest` with `conda.yaml`
   */
  environment?: { image: string; condaFile?: string } | { id: string };
  /** Extra environment variables of the job's Python processes. Never secret values: the script reads those from Key Vault. */
  environmentVariables?: Record<string, string>;
  /** Azure ML experiment the job is filed under. @default 'amlbatch' */
  experimentName?: string;
}

/** Workflow input as a user writes it; every field but `inputFolder` is optional. */
export interface BatchScoringInput {
  /**
   * Folder of files to score. Local backend: an absolute path on the machine that runs the worker. Azure backend:
   * a folder path inside the datastore's container, e.g. `images/2024-06-01`.
   */
  inputFolder: string;
  /** Backend that runs the batch. @default 'local' */
  backend?: Backend;
  /**
   * Folder holding the entry script and its modules, an absolute path on the worker's machine.
   * @default the sample scoring package bundled with amlbatch (`scoring/`)
   */
  codeDirectory?: string;
  /** Entry script path relative to `codeDirectory`. @default 'score.py' */
  entryScript?: string;
  /** Arguments for the entry script. @default ['--input_root', '${{inputs.input_data}}'] */
  programArguments?: string[];
  /** Files per `run()` call. @default 10 */
  miniBatchSize?: number;
  /** Python worker processes per node. @default the number of CPU cores of the machine that runs the job */
  processCount?: number;
  /** Seconds one `run()` call may take before its process is killed and the mini-batch retried. @default 60 */
  runInvocationTimeout?: number;
  /** Extra attempts for a failed mini-batch. @default 2 */
  maxRetries?: number;
  /** Failed items above which the job fails; -1 ignores item failures. @default -1 */
  errorThreshold?: number;
  /** Failed mini-batches above which the job fails; -1 ignores mini-batch failures. @default -1 */
  miniBatchErrorThreshold?: number;
  /** Output action for `run()` results. @default 'append_row' */
  outputAction?: OutputActionName;
  /** Output file name for `append_row`. @default 'parallel_run_step.txt' */
  appendRowFileName?: string;
  /**
   * Names of the secrets the entry script reads; the vault stage checks each exists. Names only, never values.
   * @default ['model-signing-key'] with the bundled sample script, [] with any other `codeDirectory`
   */
  secretNames?: string[];
  /** Folder that receives the collected rows and `summary.json`. @default `<workspace>/results/<workflow id>` */
  resultsFolder?: string;
  /**
   * Whether a batch that fails for good or is cancelled keeps (`keep`) or deletes (`remove_created`) the
   * datastore registration and dataset version it created. The job is cancelled either way. @default 'keep'
   */
  assetsOnFailure?: AssetsOnFailure;
  /**
   * Seconds a failed stage waits for an operator's `retry` or `abort` signal before the batch fails; 0 fails at
   * once. Only failures a person can fix wait (invalid settings, missing secret or folder, permission, conflict,
   * failed job, retries exhausted). @default 86400 (24 hours)
   */
  operatorRetryTimeout?: number;
  /**
   * Follow-up jobs the batch may submit after its first, each over only the items that are still failed or
   * without a result (error threshold exceeded, job canceled by someone else, crashed or pre-empted). Their rows
   * are appended to the same results file; an item already scored is never scored again. @default 0
   */
  followUpRounds?: number;
  /**
   * Makes this batch a rescore of an earlier one: it scores only the items the earlier batch's item ledger
   * records as failed, in the earlier batch's datastore, dataset version and `resultsFolder` (required here).
   * `amlbatch rescore <workflow id>` fills this in.
   */
  rescore?: RescoreSettings;
  /** Required with `backend: "azure"`, rejected otherwise. */
  azure?: AzureBatchSettings;
}

/** The batch a rescore finishes, and the dataset version it scored; a changed input folder is refused. */
export interface RescoreSettings {
  /** Workflow id of the batch whose failed items are scored again. */
  workflowId: string;
  /** The dataset version that batch scored. */
  datasetVersion: string;
}

/** The input after validation, with every default applied except those only the worker's machine can know. */
export interface ResolvedBatchInput {
  inputFolder: string;
  backend: Backend;
  /** Undefined means the bundled sample package; the activity resolves its path on the worker. */
  codeDirectory?: string;
  entryScript: string;
  programArguments: string[];
  miniBatchSize: number;
  /** Undefined means the number of CPU cores where the job runs. */
  processCount?: number;
  runInvocationTimeout: number;
  maxRetries: number;
  errorThreshold: number;
  miniBatchErrorThreshold: number;
  outputAction: OutputActionName;
  appendRowFileName: string;
  secretNames: string[];
  resultsFolder?: string;
  assetsOnFailure: AssetsOnFailure;
  /** Seconds; 0 fails a stage at once. */
  operatorRetryTimeout: number;
  followUpRounds: number;
  rescore?: RescoreSettings;
  azure?: AzureBatchSettings;
}

export const SAMPLE_SECRET_NAMES = ['model-signing-key'];

export const INPUT_DEFAULTS = {
  backend: 'local' as Backend,
  entryScript: 'score.py',
  programArguments: ['--input_root', INPUT_DATA_PLACEHOLDER],
  miniBatchSize: 10,
  runInvocationTimeout: 60,
  maxRetries: 2,
  errorThreshold: -1,
  miniBatchErrorThreshold: -1,
  outputAction: 'append_row' as OutputActionName,
  appendRowFileName: 'parallel_run_step.txt',
  assetsOnFailure: 'keep' as AssetsOnFailure,
  operatorRetryTimeout: 24 * 3600,
  followUpRounds: 0,
};

/** One invalid field: its name, the value received and what is allowed. */
export interface InputProblem {
  field: string;
  value: unknown;
  allowed: string;
}

/** Thrown by `validateBatchInput` when the input is not a valid `BatchScoringInput`; lists every problem found. */
export class InvalidBatchInputError extends Error {
  constructor(readonly problems: InputProblem[]) {
    super(
      `invalid batchScoring input: ${problems
        .map((p) => `${p.field} = ${describeValue(p.value)} is not allowed; expected ${p.allowed}`)
        .join('; ')}`,
    );
    this.name = 'InvalidBatchInputError';
  }
}

const KNOWN_FIELDS: ReadonlyArray<keyof BatchScoringInput> = [
  'inputFolder',
  'backend',
  'codeDirectory',
  'entryScript',
  'programArguments',
  'miniBatchSize',
  'processCount',
  'runInvocationTimeout',
  'maxRetries',
  'errorThreshold',
  'miniBatchErrorThreshold',
  'outputAction',
  'appendRowFileName',
  'secretNames',
  'resultsFolder',
  'assetsOnFailure',
  'operatorRetryTimeout',
  'followUpRounds',
  'rescore',
  'azure',
];

/** Upper bounds that keep one mini-batch's request and the job's settings within what Azure ML accepts. */
const MAX_MINI_BATCH_SIZE = 100_000;
const MAX_PROCESS_COUNT = 256;
/** Seconds; Azure ML's `retry_settings.timeout` is an int32 of seconds, and a week is far beyond any sane run() call. */
const MAX_RUN_INVOCATION_TIMEOUT = 7 * 24 * 3600;
const MAX_RETRIES = 100;
/** Seconds; a failed stage can wait up to a year for an operator, far beyond any on-call rotation. */
const MAX_OPERATOR_RETRY_TIMEOUT = 365 * 24 * 3600;
/** Each round is a whole job; past a few, the items left fail for a reason another round will not fix. */
const MAX_FOLLOW_UP_ROUNDS = 10;
/** Key Vault secret names: 1 to 127 characters, letters, digits and dashes. */
const SECRET_NAME_PATTERN = /^[0-9a-zA-Z-]{1,127}$/;
/** A plain file name: no folder separators, not `.` or `..`, no control characters. */
// eslint-disable-next-line no-control-regex -- control characters are exactly what this pattern rejects
const FILE_NAME_PATTERN = /^(?!\.{1,2}$)[^/\\\u0000-\u001f]{1,255}$/;

/**
 * Validates a raw workflow input and applies defaults. Throws `InvalidBatchInputError` naming every invalid field,
 * its value and what is allowed. Unknown fields are rejected too, so a misspelt option is never silently ignored.
 */
export function validateBatchInput(raw: unknown): ResolvedBatchInput {
  if (typeof raw === 'string') {
    throw new InvalidBatchInputError([
      { field: '(input)', value: truncate(raw), allowed: 'a JSON object such as {"inputFolder": "/data/images"}, not a string' },
    ]);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new InvalidBatchInputError([
      { field: '(input)', value: raw, allowed: 'one JSON object such as {"inputFolder": "/data/images"}' },
    ]);
  }

  const input = raw as Record<string, unknown>;
  const problems: InputProblem[] = [];
  const check = new FieldChecker(input, problems);

  for (const key of Object.keys(input)) {
    if (!(KNOWN_FIELDS as readonly string[]).includes(key)) {
      problems.push({ field: key, value: input[key], allowed: `no such field; known fields are ${KNOWN_FIELDS.join(', ')}` });
    }
  }

  const inputFolder = check.requiredString('inputFolder', 'a non-empty folder path, e.g. "/data/images"');
  const backend = check.oneOf('backend', BACKENDS, INPUT_DEFAULTS.backend);
  if (backend === 'local' && inputFolder !== undefined && !inputFolder.startsWith('/')) {
    problems.push({
      field: 'inputFolder',
      value: inputFolder,
      allowed: 'an absolute path on the worker machine for the local backend (the CLI resolves relative paths)',
    });
  }
  const codeDirectory = check.optionalString('codeDirectory', 'an absolute folder path on the worker machine');
  if (codeDirectory !== undefined && !codeDirectory.startsWith('/')) {
    problems.push({ field: 'codeDirectory', value: codeDirectory, allowed: 'an absolute folder path on the worker machine' });
  }
  const entryScript = check.optionalString('entryScript', 'a .py file path relative to codeDirectory') ?? INPUT_DEFAULTS.entryScript;
  if (!entryScript.endsWith('.py') || entryScript.startsWith('/') || entryScript.split('/').includes('..')) {
    problems.push({ field: 'entryScript', value: entryScript, allowed: 'a .py file path relative to codeDirectory, without ".."' });
  }
  const programArguments =
    check.stringArray('programArguments', 'an array of strings') ?? [...INPUT_DEFAULTS.programArguments];
  const miniBatchSize = check.integer('miniBatchSize', 1, MAX_MINI_BATCH_SIZE) ?? INPUT_DEFAULTS.miniBatchSize;
  const processCount = check.integer('processCount', 1, MAX_PROCESS_COUNT);
  const runInvocationTimeout =
    check.integer('runInvocationTimeout', 1, MAX_RUN_INVOCATION_TIMEOUT, 'seconds') ?? INPUT_DEFAULTS.runInvocationTimeout;
  const maxRetries = check.integer('maxRetries', 0, MAX_RETRIES) ?? INPUT_DEFAULTS.maxRetries;
  const errorThreshold = check.threshold('errorThreshold') ?? INPUT_DEFAULTS.errorThreshold;
  const miniBatchErrorThreshold = check.threshold('miniBatchErrorThreshold') ?? INPUT_DEFAULTS.miniBatchErrorThreshold;
  const outputAction = check.oneOf('outputAction', OUTPUT_ACTIONS, INPUT_DEFAULTS.outputAction);
  const appendRowFileName = check.optionalString('appendRowFileName', 'a plain file name') ?? INPUT_DEFAULTS.appendRowFileName;
  if (!FILE_NAME_PATTERN.test(appendRowFileName)) {
    problems.push({ field: 'appendRowFileName', value: appendRowFileName, allowed: 'a plain file name without "/" or "\\"' });
  }
  const secretNames = check.stringArray('secretNames', 'an array of Key Vault secret names') ??
    (codeDirectory === undefined ? [...SAMPLE_SECRET_NAMES] : []);
  secretNames.forEach((name, index) => {
    if (!SECRET_NAME_PATTERN.test(name)) {
      problems.push({ field: `secretNames[${index}]`, value: name, allowed: '1 to 127 letters, digits or dashes (a Key Vault secret name)' });
    }
  });
  const resultsFolder = check.optionalString('resultsFolder', 'an absolute folder path on the worker machine');
  if (resultsFolder !== undefined && !resultsFolder.startsWith('/')) {
    problems.push({ field: 'resultsFolder', value: resultsFolder, allowed: 'an absolute folder path on the worker machine' });
  }
  const assetsOnFailure = check.oneOf('assetsOnFailure', ASSETS_ON_FAILURE, INPUT_DEFAULTS.assetsOnFailure);
  const operatorRetryTimeout =
    check.integer('operatorRetryTimeout', 0, MAX_OPERATOR_RETRY_TIMEOUT, 'seconds; 0 fails a stage at once') ??
    INPUT_DEFAULTS.operatorRetryTimeout;
  const followUpRounds = check.integer('followUpRounds', 0, MAX_FOLLOW_UP_ROUNDS) ?? INPUT_DEFAULTS.followUpRounds;
  const rescore = validateRescore(input.rescore, resultsFolder, problems);
  if (outputAction === 'summary_only' && (followUpRounds > 0 || rescore !== undefined)) {
    problems.push({
      field: followUpRounds > 0 ? 'followUpRounds' : 'rescore',
      value: followUpRounds > 0 ? followUpRounds : input.rescore,
      allowed: 'outputAction "append_row" with follow-up rounds and rescores: with summary_only a job writes no rows, so nothing tells which items a later job scored',
    });
  }
  const azure = backend === 'azure' ? validateAzureSettings(input.azure, problems) : undefined;
  if (backend !== 'azure' && input.azure !== undefined) {
    problems.push({ field: 'azure', value: input.azure, allowed: 'no "azure" settings unless backend is "azure"' });
  }
  if (backend === 'azure' && inputFolder !== undefined && (inputFolder.startsWith('/') || inputFolder.split('/').includes('..'))) {
    problems.push({
      field: 'inputFolder',
      value: inputFolder,
      allowed: 'a folder path inside the datastore container for the Azure backend, e.g. "images/batch-1", without a leading "/" or ".."',
    });
  }

  if (problems.length > 0 || inputFolder === undefined) throw new InvalidBatchInputError(problems);
  return {
    inputFolder,
    backend,
    ...(codeDirectory !== undefined ? { codeDirectory } : {}),
    entryScript,
    programArguments,
    miniBatchSize,
    ...(processCount !== undefined ? { processCount } : {}),
    runInvocationTimeout,
    maxRetries,
    errorThreshold,
    miniBatchErrorThreshold,
    outputAction,
    appendRowFileName,
    secretNames,
    ...(resultsFolder !== undefined ? { resultsFolder } : {}),
    assetsOnFailure,
    operatorRetryTimeout,
    followUpRounds,
    ...(rescore !== undefined ? { rescore } : {}),
    ...(azure !== undefined ? { azure } : {}),
  };
}

function validateRescore(raw: unknown, resultsFolder: string | undefined, problems: InputProblem[]): RescoreSettings | undefined {
  if (raw === undefined) return undefined;
  const shape = '{"workflowId": "<earlier batch>", "datasetVersion": "<its dataset version>"}';
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    problems.push({ field: 'rescore', value: raw, allowed: `an object ${shape}` });
    return undefined;
  }
  const before = problems.length;
  const check = new FieldChecker(raw as Record<string, unknown>, problems, 'rescore.');
  for (const key of Object.keys(raw)) {
    if (key !== 'workflowId' && key !== 'datasetVersion') {
      problems.push({ field: `rescore.${key}`, value: (raw as Record<string, unknown>)[key], allowed: 'no such field; known fields are workflowId, datasetVersion' });
    }
  }
  const workflowId = check.requiredString('workflowId', 'the workflow id of the batch to rescore');
  const datasetVersion = check.requiredString('datasetVersion', 'the dataset version that batch scored, from its result');
  if (resultsFolder === undefined) {
    problems.push({ field: 'resultsFolder', value: undefined, allowed: 'the earlier batch\'s results folder (required with "rescore")' });
  }
  if (problems.length > before || workflowId === undefined || datasetVersion === undefined) return undefined;
  return { workflowId, datasetVersion };
}

/** Azure ML asset and datastore names, as the REST API enforces them on PUT. */
const AZURE_NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$/;
/** Storage account names: 3 to 24 lower-case letters and digits. */
const STORAGE_ACCOUNT_PATTERN = /^[a-z0-9]{3,24}$/;
/** Blob container names: 3 to 63 lower-case letters, digits and single dashes. */
const CONTAINER_PATTERN = /^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;
const AZURE_FIELDS = [
  'subscriptionId',
  'resourceGroup',
  'workspaceName',
  'compute',
  'instanceCount',
  'keyVaultUrl',
  'datastore',
  'environment',
  'environmentVariables',
  'experimentName',
];
const DATASTORE_FIELDS = ['name', 'accountName', 'containerName', 'credential', 'secretName', 'allowUpdate'];
/** Nodes one Azure ML compute cluster can give a job; far above any real cluster's quota. */
const MAX_INSTANCE_COUNT = 1000;

function validateAzureSettings(raw: unknown, problems: InputProblem[]): AzureBatchSettings | undefined {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    problems.push({
      field: 'azure',
      value: raw,
      allowed: 'an object with at least "compute" and "datastore" when backend is "azure"',
    });
    return undefined;
  }
  const azure = raw as Record<string, unknown>;
  const check = new FieldChecker(azure, problems, 'azure.');
  for (const key of Object.keys(azure)) {
    if (!AZURE_FIELDS.includes(key)) {
      problems.push({ field: `azure.${key}`, value: azure[key], allowed: `no such field; known fields are ${AZURE_FIELDS.join(', ')}` });
    }
  }
  const subscriptionId = check.optionalString('subscriptionId', 'a subscription id (GUID)');
  const resourceGroup = check.optionalString('resourceGroup', 'a resource group name');
  const workspaceName = check.optionalString('workspaceName', 'an Azure ML workspace name');
  const compute = check.requiredString('compute', 'the name of an Azure ML compute cluster');
  if (compute !== undefined && !AZURE_NAME_PATTERN.test(compute)) {
    problems.push({ field: 'azure.compute', value: compute, allowed: 'a compute name of letters, digits, "-" and "_"' });
  }
  const instanceCount = check.integer('instanceCount', 1, MAX_INSTANCE_COUNT);
  const keyVaultUrl = check.optionalString('keyVaultUrl', 'an https:// Key Vault URL');
  if (keyVaultUrl !== undefined && !keyVaultUrl.startsWith('https://')) {
    problems.push({ field: 'azure.keyVaultUrl', value: keyVaultUrl, allowed: 'an https:// Key Vault URL, e.g. "https://myvault.vault.azure.net"' });
  }
  const experimentName = check.optionalString('experimentName', 'an experiment name');
  const environmentVariables = validateStringMap(azure.environmentVariables, 'azure.environmentVariables', problems);
  const environment = validateEnvironment(azure.environment, problems);
  const datastore = validateDatastore(azure.datastore, problems);
  if (compute === undefined || datastore === undefined) return undefined;
  return {
    ...(subscriptionId !== undefined ? { subscriptionId } : {}),
    ...(resourceGroup !== undefined ? { resourceGroup } : {}),
    ...(workspaceName !== undefined ? { workspaceName } : {}),
    compute,
    ...(instanceCount !== undefined ? { instanceCount } : {}),
    ...(keyVaultUrl !== undefined ? { keyVaultUrl } : {}),
    datastore,
    ...(environment !== undefined ? { environment } : {}),
    ...(environmentVariables !== undefined ? { environmentVariables } : {}),
    ...(experimentName !== undefined ? { experimentName } : {}),
  };
}

function validateDatastore(raw: unknown, problems: InputProblem[]): AzureDatastoreSettings | undefined {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    problems.push({
      field: 'azure.datastore',
      value: raw,
      allowed: 'an object {"name", "accountName", "containerName", "credential"?, "secretName"?}',
    });
    return undefined;
  }
  const datastore = raw as Record<string, unknown>;
  const check = new FieldChecker(datastore, problems, 'azure.datastore.');
  for (const key of Object.keys(datastore)) {
    if (!DATASTORE_FIELDS.includes(key)) {
      problems.push({
        field: `azure.datastore.${key}`,
        value: key === 'key' || key === 'sasToken' || key === 'accountKey' ? '(hidden)' : datastore[key],
        allowed: `no such field; known fields are ${DATASTORE_FIELDS.join(', ')}. Keys and SAS tokens belong in Key Vault, named by secretName`,
      });
    }
  }
  const name = check.requiredString('name', 'a datastore name');
  if (name !== undefined && !AZURE_NAME_PATTERN.test(name)) {
    problems.push({ field: 'azure.datastore.name', value: name, allowed: 'letters, digits, "-" and "_", starting with a letter or digit' });
  }
  const accountName = check.requiredString('accountName', 'a storage account name');
  if (accountName !== undefined && !STORAGE_ACCOUNT_PATTERN.test(accountName)) {
    problems.push({ field: 'azure.datastore.accountName', value: accountName, allowed: '3 to 24 lower-case letters and digits' });
  }
  const containerName = check.requiredString('containerName', 'a blob container name');
  if (containerName !== undefined && !CONTAINER_PATTERN.test(containerName)) {
    problems.push({ field: 'azure.datastore.containerName', value: containerName, allowed: '3 to 63 lower-case letters, digits and single dashes' });
  }
  const credential = check.oneOf('credential', DATASTORE_CREDENTIALS, 'identity');
  const secretName = check.optionalString('secretName', 'a Key Vault secret name');
  if (secretName !== undefined && !SECRET_NAME_PATTERN.test(secretName)) {
    problems.push({ field: 'azure.datastore.secretName', value: secretName, allowed: '1 to 127 letters, digits or dashes (a Key Vault secret name)' });
  }
  if (credential !== 'identity' && secretName === undefined) {
    problems.push({
      field: 'azure.datastore.secretName',
      value: undefined,
      allowed: `the Key Vault secret that holds the ${credential === 'sas' ? 'SAS token' : 'account key'} (required with credential "${credential}")`,
    });
  }
  const allowUpdate = datastore.allowUpdate;
  if (allowUpdate !== undefined && typeof allowUpdate !== 'boolean') {
    problems.push({ field: 'azure.datastore.allowUpdate', value: allowUpdate, allowed: 'true or false' });
  }
  if (name === undefined || accountName === undefined || containerName === undefined) return undefined;
  return {
    name,
    accountName,
    containerName,
    credential,
    ...(secretName !== undefined ? { secretName } : {}),
    ...(allowUpdate === true ? { allowUpdate: true } : {}),
  };
}

function validateEnvironment(raw: unknown, problems: InputProblem[]): AzureBatchSettings['environment'] {
  if (raw === undefined) return undefined;
  const allowed = '{"image": "<docker image>", "condaFile"?: "<path in codeDirectory>"} or {"id": "azureml:<name>:<version>"}';
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    problems.push({ field: 'azure.environment', value: raw, allowed });
    return undefined;
  }
  const environment = raw as Record<string, unknown>;
  const keys = Object.keys(environment).sort().join(',');
  if (keys === 'id' && typeof environment.id === 'string' && environment.id.startsWith('azureml:')) {
    return { id: environment.id };
  }
  if ((keys === 'image' || keys === 'condaFile,image') && typeof environment.image === 'string' && environment.image !== '') {
    const condaFile = environment.condaFile;
    if (condaFile === undefined) return { image: environment.image };
    if (typeof condaFile === 'string' && condaFile !== '' && !condaFile.startsWith('/') && !condaFile.split('/').includes('..')) {
      return { image: environment.image, condaFile };
    }
  }
  problems.push({ field: 'azure.environment', value: raw, allowed });
  return undefined;
}

function validateStringMap(raw: unknown, field: string, problems: InputProblem[]): Record<string, string> | undefined {
  if (raw === undefined) return undefined;
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw) && Object.values(raw).every((v) => typeof v === 'string')) {
    return { ...(raw as Record<string, string>) };
  }
  problems.push({ field, value: raw, allowed: 'an object of variable name to string value' });
  return undefined;
}

/** Reads typed fields from the raw input, recording a problem for each field of the wrong type or range. */
class FieldChecker {
  constructor(
    private readonly input: Record<string, unknown>,
    private readonly problems: InputProblem[],
    /** Prefix of the field names in problems, such as `azure.` for nested objects. */
    private readonly prefix = '',
  ) {}

  private report(field: string, value: unknown, allowed: string): void {
    this.problems.push({ field: `${this.prefix}${field}`, value, allowed });
  }

  requiredString(field: string, allowed: string): string | undefined {
    const value = this.input[field];
    if (typeof value === 'string' && value.trim() !== '') return value;
    this.report(field, value, value === undefined ? `${allowed} (the field is required)` : allowed);
    return undefined;
  }

  optionalString(field: string, allowed: string): string | undefined {
    const value = this.input[field];
    if (value === undefined) return undefined;
    if (typeof value === 'string' && value.trim() !== '') return value;
    this.report(field, value, allowed);
    return undefined;
  }

  oneOf<T extends string>(field: string, choices: readonly T[], fallback: T): T {
    const value = this.input[field];
    if (value === undefined) return fallback;
    if (typeof value === 'string' && (choices as readonly string[]).includes(value)) return value as T;
    this.report(field, value, `one of ${choices.map((c) => `"${c}"`).join(', ')}`);
    return fallback;
  }

  integer(field: string, min: number, max: number, unit?: string): number | undefined {
    const value = this.input[field];
    if (value === undefined) return undefined;
    if (typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max) return value;
    this.report(field, value, `an integer from ${min} to ${max}${unit ? ` (${unit})` : ''}`);
    return undefined;
  }

  threshold(field: string): number | undefined {
    const value = this.input[field];
    if (value === undefined) return undefined;
    if (typeof value === 'number' && Number.isInteger(value) && value >= -1 && value <= Number.MAX_SAFE_INTEGER) return value;
    this.report(field, value, 'a whole number of 0 or more, or -1 to ignore failures');
    return undefined;
  }

  stringArray(field: string, allowed: string): string[] | undefined {
    const value = this.input[field];
    if (value === undefined) return undefined;
    if (Array.isArray(value) && value.every((item) => typeof item === 'string')) return [...(value)];
    this.report(field, value, allowed);
    return undefined;
  }
}

function describeValue(value: unknown): string {
  if (value === undefined) return '(missing)';
  try {
    // JSON.stringify returns undefined for functions and symbols, which a JSON input cannot hold anyway.
    return truncate(JSON.stringify(value) ?? typeof value);
  } catch {
    return truncate(`(a ${typeof value} that is not JSON)`);
  }
}

function truncate(text: string, max = 200): string {
  return text.length > max ? `${text.slice(0, max)}… (${text.length} characters)` : text;
}
