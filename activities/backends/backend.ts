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
  JobRef,
  RegisterDatasetInput,
  StageInput,
  SubmitJobInput,
  JobProgress,
  WaitForJobInput,
} from '../types';
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
  submitScoringJob(input: SubmitJobInput): Promise<JobRef>;
  /**
   * Polls the job until it ends and returns when it completed; throws `StageError('JobFailed')` or
   * `StageError('JobCanceled')` when it ended otherwise.
   */
  waitForJob(input: WaitForJobInput, options: WaitOptions): Promise<JobOutcome>;
  collectResults(input: CollectResultsInput): Promise<CollectedResults>;
}
