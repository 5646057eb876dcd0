import type {
  AuthenticateResult,
  CheckVaultInput,
  CheckVaultResult,
  CollectResultsInput,
  CollectedResults,
  DatasetRef,
  DatastoreRef,
  EnsureDatastoreInput,
  JobOutcome,
  ItemSelection,
  JobRef,
  RegisterDatasetInput,
  SelectItemsInput,
  StageInput,
  SubmitJobInput,
  JobProgress,
  WaitForJobInput,
} from '../types';
import type {
  CancelJobInput,
  CancelJobResult,
  DeleteAssetResult,
  DeleteDatasetVersionInput,
  DeleteDatastoreInput,
} from '../compensation-types';
import type { Backend } from '../../workflows/input';

/** One observation of a running job. */
export interface JobPoll {
  jobName: string;
  /** The job's status in Azure ML's `JobStatus` terms, e.g. `Running`. */
  status: string;
  progress: JobProgress;
}

export interface WaitOptions {
  /** Milliseconds between two polls. */
  pollIntervalMs: number;
  /** Aborted when the activity is cancelled or its worker shuts down. */
  signal: AbortSignal;
  /** Called after an abort: true when the workflow asked for cancellation, so the job must be cancelled too. */
  isCancelRequested(): boolean;
  /** Called after every poll; the activity heartbeats with it. */
  onPoll(poll: JobPoll): void;
}

export interface CancelOptions {
  /** Called after every status read while the cancellation completes; the activity heartbeats with it. */
  onPoll(status: string): void;
}

/**
 * What a backend does for each stage. The stage activities in `activities/` own the Temporal concerns (failure
 * classification, logging); a backend owns the work. Errors a person must fix are thrown as `StageError`.
 */
export interface ScoringBackend {
  readonly name: Backend;
  authenticate(input: StageInput): Promise<AuthenticateResult>;
  checkVaultAccess(input: CheckVaultInput): Promise<CheckVaultResult>;
  ensureDatastore(input: EnsureDatastoreInput): Promise<DatastoreRef>;
  registerDataset(input: RegisterDatasetInput, reportProgress: (filesListed: number) => void): Promise<DatasetRef>;
  /**
   * Picks the items a follow-up job scores (see `SelectItemsInput`) and makes them a job input of their own.
   * Idempotent: a retried call for the same submission gives the same selection.
   */
  selectItems(input: SelectItemsInput): Promise<ItemSelection>;
  /** Starts the job over `input.selection` when set, else over the whole dataset. */
  submitScoringJob(input: SubmitJobInput): Promise<JobRef>;
  /**
   * Polls the job until it ends and returns when it completed; throws `StageError('JobFailed')` or
   * `StageError('JobCanceled')` when it ended otherwise.
   */
  waitForJob(input: WaitForJobInput, options: WaitOptions): Promise<JobOutcome>;
  /**
   * Merges the job's rows into the batch's results file as a new round (see results-rounds.ts) and returns the
   * inputs of the item ledger: the batch's manifest and every round so far.
   */
  collectResults(input: CollectResultsInput): Promise<CollectedResults>;

  /*
   * Undo steps of a batch that failed for good or was cancelled. Each is idempotent, because its activity may run
   * again after a crash: a job that already ended and an asset that is already gone count as done.
   */

  /**
   * Cancels the job of one submission of the batch and resolves once the job is in a terminal status. A job that
   * already ended or is finalizing is not cancelled; the call waits for its terminal status.
   */
  cancelScoringJob(input: CancelJobInput, options: CancelOptions): Promise<CancelJobResult>;
  /** Deletes a dataset version that this batch registered. */
  deleteDatasetVersion(input: DeleteDatasetVersionInput): Promise<DeleteAssetResult>;
  /** Deletes a datastore registration that this batch created; the storage it points at is not touched. */
  deleteDatastore(input: DeleteDatastoreInput): Promise<DeleteAssetResult>;
}
