/**
 * Inputs and results of the stage activities. Every value here is JSON and small: file lists and result rows stay
 * on disk or in blob storage, and stages pass paths, counts and hashes, so workflow history stays small whatever
 * the folder size.
 */
import type { AzureBatchSettings, Backend, OutputActionName, ResolvedBatchInput } from '../workflows/input';
import type { InputIssue } from './ledger/input-checks';

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
  /**
   * Job settings that the input checks test before anything is submitted. Without them only the manifest is
   * checked: names, duplicates and collisions.
   */
  checks?: {
    programArguments: string[];
    /** Seconds one run() call may take; with a measured scoring rate it enables the file-size check. */
    runInvocationTimeout: number;
    miniBatchSize: number;
    /** With `codeDirectory`, selects the scoring rate measured on this entry script. */
    entryScript?: string;
    /** @default the bundled scoring package, as for the job */
    codeDirectory?: string;
  };
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
  /** Problems the input checks found that do not block the batch, with at most 3 examples each; absent when none. */
  inputWarnings?: InputIssue[];
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
  /** The items this job scores when they are not the whole dataset, as `selectItems` prepared them. */
  selection?: ItemSelection;
  settings: JobSettings;
}

/** The rule `selectItems` picks a job's items by: those the batch's item ledger records as failed. */
export type SelectionKind = 'failed_items';

export interface SelectItemsInput extends StageInput {
  workflowId: string;
  /** The submission the selection is for; its job scores the selected items. */
  submission: number;
  /** The batch's whole dataset. */
  dataset: DatasetRef;
  kind: SelectionKind;
  /** Results folder whose item ledger (`ledger.jsonl`) and manifest copy name the items to pick. */
  resultsFolder: string;
}

/**
 * A subset of a dataset's items, ready to be a job's input. Local backend: a manifest of the items, read against
 * the dataset's own folder. Azure backend: a folder in the datastore holding copies of the items under their
 * relative paths, so the entry script reports the same `path` for them as for the whole folder.
 */
export interface ItemSelection {
  kind: SelectionKind;
  /** JSON Lines manifest of the selected items, a file on the worker's machine. */
  manifestFile: string;
  /** Folder the selected items' relative paths resolve against: a local folder or an `azureml://` URI. */
  inputRoot: string;
  itemCount: number;
  totalBytes: number;
  manifestSha256: string;
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
  /** The batch's whole dataset; the item ledger has one record per item of its manifest. */
  dataset: DatasetRef;
  /** The items the job scored, when they were a selection rather than the whole dataset. */
  selection?: ItemSelection;
  /**
   * The job's terminal status. A job that failed or was canceled is collected only when a follow-up round will score what
   * it left: its rows so far are kept, and a missing output counts as no rows.
   */
  jobStatus: 'Completed' | 'Failed' | 'Canceled';
  progress: JobProgress;
}

/**
 * One job's rows in the batch's results file. The results file has the rows of round 1, then those of round 2,
 * and so on; `results-rounds.json` beside it lists the rounds.
 */
export interface ResultsRound {
  round: number;
  jobName: string;
  /** 1-based line of the results file where this round's rows begin. */
  firstLine: number;
  rows: number;
  failedRows: number;
  /** Byte length of the results file after this round's rows. */
  endBytes: number;
  /** Failure records of this round's job (local backend), for the item ledger. */
  failureRecordsFile?: string;
  /** The reason items of this round's job have no row, from the job's logs (Azure backend). */
  noResultReason?: { errorType?: string; message: string };
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
  /** The rounds merged into the results folder so far, this job's last; the stage returns only `round`. */
  rounds?: ResultsRound[];
  /** This job's round: 1 for the batch's first job, counting up with each job whose rows were merged. */
  round?: number;
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
  /**
   * The first failed items in manifest order (at most 10), each with its `failedByReason` label and its message
   * cut to 300 characters.
   */
  failureExamples: { path: string; reason: string; message?: string }[];
}
