/**
 * Inputs and results of the stage activities. Every value here is JSON and small: file lists and result rows stay
 * on disk or in blob storage, and stages pass paths, counts and hashes, so workflow history stays small whatever
 * the folder size.
 */
import type { AzureBatchSettings, Backend, OutputActionName, ResolvedBatchInput } from '../workflows/input';

/** The Azure ML workspace a batch runs in, after `.azureml/config.json`, environment and input are merged. */
export interface AzureWorkspaceRef {
  subscriptionId: string;
  resourceGroup: string;
  workspaceName: string;
}

/** The batch's Azure settings as the stages see them; `workspace` and `keyVaultUrl` are set once authenticated. */
export interface AzureStageSettings extends AzureBatchSettings {
  workspace?: AzureWorkspaceRef;
}

export interface StageInput {
  backend: Backend;
  /** Set with `backend: "azure"`. */
  azure?: AzureStageSettings;
}

export interface AuthenticateResult {
  /** Principal the stages act as: the local user, or the Azure principal. */
  identity: string;
  /** Location of the batch's assets: the local workspace folder or the Azure ML workspace's resource id. */
  workspace: string;
  /** Azure backend: the resolved workspace and the Key Vault the batch's secrets live in. */
  azure?: { workspace: AzureWorkspaceRef; keyVaultUrl: string };
}

export interface CheckVaultInput extends StageInput {
  secretNames: string[];
}

export interface CheckVaultResult {
  /** The secret source checked: a local secrets file or a Key Vault URL. */
  vault: string;
  secretsChecked: number;
}

export interface EnsureDatastoreInput extends StageInput {
  inputFolder: string;
}

export interface DatastoreRef {
  datastoreName: string;
  /** The datastore's root: a local folder, or a blob container URL. */
  root: string;
  /** True when this batch registered the datastore, false when it reused an existing one with the same settings. */
  created: boolean;
}

export interface RegisterDatasetInput extends StageInput {
  datastore: DatastoreRef;
  /** The input's `inputFolder`: a local path, or a folder inside the datastore's container. */
  inputFolder: string;
}

export interface DatasetRef {
  datasetName: string;
  /** Derived from the manifest's hash, so the same folder content always gives the same version. */
  version: string;
  /** Location of the stored manifest: a local file path or a blob URL. */
  manifestLocation: string;
  manifestSha256: string;
  itemCount: number;
  totalBytes: number;
  /** Folder the manifest's relative paths are resolved against. */
  inputRoot: string;
  created: boolean;
}

/** The parallel-run settings of the validated input that a scoring job is submitted with. */
export type JobSettings = Pick<
  ResolvedBatchInput,
  | 'codeDirectory'
  | 'entryScript'
  | 'programArguments'
  | 'miniBatchSize'
  | 'processCount'
  | 'runInvocationTimeout'
  | 'maxRetries'
  | 'errorThreshold'
  | 'miniBatchErrorThreshold'
  | 'outputAction'
  | 'appendRowFileName'
>;

export interface SubmitJobInput extends StageInput {
  workflowId: string;
  /** 1 for a batch's first job; later submissions of the same batch count up, so each gets its own job name. */
  submission: number;
  dataset: DatasetRef;
  settings: JobSettings;
}

export interface JobRef {
  jobName: string;
  /** True when a job with this name already existed (a retried submit), so nothing new was started. */
  attached: boolean;
}

export interface WaitForJobInput extends StageInput {
  jobName: string;
}

export interface JobProgress {
  miniBatchesTotal: number;
  miniBatchesSucceeded: number;
  miniBatchesFailed: number;
  itemsTotal: number;
  itemsSucceeded: number;
  itemsFailed: number;
}

export interface JobOutcome {
  jobName: string;
  /** Terminal status, in Azure ML's `JobStatus` terms. */
  status: 'Completed';
  progress: JobProgress;
}

export interface CollectResultsInput extends StageInput {
  jobName: string;
  workflowId: string;
  resultsFolder?: string;
  outputAction: OutputActionName;
  appendRowFileName: string;
  dataset: DatasetRef;
  progress: JobProgress;
}

export interface CollectedResults {
  resultsFolder: string;
  /** The merged rows, one per line; absent with `summary_only`. */
  resultsFile?: string;
  rowCount: number;
  /** Rows the entry script marked as failed with a non-null `error` field. */
  failedRowCount: number;
  resultsSha256?: string;
  /** Local copy of the dataset manifest, from which the item ledger is built. */
  manifestFile?: string;
  /** Items of mini-batches that failed every attempt, with reasons (local backend). */
  failureRecordsFile?: string;
  /** Set once the item ledger is built. */
  ledger?: LedgerSummary;
}

/** Counts of the item ledger: every manifest item ends scored, failed or excluded, exactly once. */
export interface LedgerSummary {
  /** JSON Lines file with one record per manifest item, next to the results file. */
  ledgerFile: string;
  scored: number;
  failed: number;
  excluded: number;
  /** Rows for an item beyond its first (a mini-batch run twice); collapsed to one. */
  duplicateRows: number;
  /** Rows whose key is not a manifest item; reported, not merged. */
  unknownRows: number;
  /** Failed items by kind and error type, e.g. `row_error UnidentifiedImageError`. */
  failedByReason: Record<string, number>;
}
