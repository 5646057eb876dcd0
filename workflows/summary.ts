import type { DatasetRef, JobProgress, LedgerSummary } from '../activities/types';
import type { Backend } from './input';
import type { StageName } from './stage-options';

/** `awaiting_operator`: the stage failed and waits for a `retry` or `abort` signal. */
export type StageState = 'pending' | 'running' | 'completed' | 'failed' | 'awaiting_operator' | 'cancelled' | 'skipped';

/** One stage's state and timing, as shown by the `status` query and in the batch summary. */
export interface StageRecord {
  stage: StageName;
  state: StageState;
  /** ISO 8601 workflow time the stage started. */
  startedAt?: string;
  /** ISO 8601 workflow time the stage ended. */
  endedAt?: string;
  /** Milliseconds from start to end, retries included. */
  durationMs?: number;
  /** Failure message when `state` is `failed` or `awaiting_operator`. */
  error?: string;
  /** Failure type, such as `NotFound`, when `state` is `failed` or `awaiting_operator`. */
  failureType?: string;
  /** How many times an operator's `retry` signal ran the stage again. */
  operatorRetries?: number;
}

/** The `batchScoring` workflow's result. */
export interface BatchSummary {
  workflowId: string;
  backend: Backend;
  /**
   * `nothing_to_score` when the input folder held no files, `nothing_to_rescore` when a rescore found no failed
   * items: no job was submitted.
   */
  outcome: 'scored' | 'nothing_to_score' | 'nothing_to_rescore';
  /** Set for a rescore: the workflow id of the batch whose failed items this one scored. */
  rescoreOf?: string;
  /** Risks the input checks found in the folder or settings that did not stop the batch, such as file names to rename. */
  inputWarnings?: DatasetRef['inputWarnings'];
  itemsTotal: number;
  /** Items with a row that reports no error. */
  itemsScored: number;
  /** Items of mini-batches that failed every attempt, plus rows whose `error` field is set. */
  itemsFailed: number;
  /** Folder with the results file and `summary.json`. */
  outputLocation?: string;
  resultsFile?: string;
  resultsSha256?: string;
  dataset?: { name: string; version: string; manifestSha256: string };
  /** The last job's name. */
  jobName?: string;
  /** Mini-batches over every completed job of the batch. */
  miniBatches?: { total: number; succeeded: number; failed: number };
  /** Every job, in order, when there was more than one or the batch is a rescore. */
  jobs?: JobRecord[];
  /** The item ledger's file and counts: every item scored, failed (by reason) or excluded exactly once. */
  ledger?: LedgerSummary;
  stages: StageRecord[];
}

/** One job of a batch: its first, a follow-up over the items left failed, or a rescore's. */
export interface JobRecord {
  jobName: string;
  /** Its round in the results file: 1 for the rows that came first. */
  round?: number;
  /** The job's terminal status. A failed or canceled job's rows are kept, and a follow-up job scores what it left. */
  status: 'Completed' | 'Failed' | 'Canceled';
  /** Items the job was given. */
  items: number;
  /** Set for a completed job; the wait of a failed or canceled job ends without its counts. */
  miniBatches?: { total: number; succeeded: number; failed: number };
}

/** State of the batch; `compensating` while it undoes what it created after a final failure or cancellation. */
export type BatchState = 'running' | 'awaiting_operator' | 'compensating' | 'completed' | 'failed' | 'cancelled';

/** A stage failure that waits for an operator's `retry` or `abort` signal. */
export interface PendingFailure {
  stage: StageName;
  failureType: string;
  message: string;
  /** ISO 8601 workflow time the stage failed. */
  since: string;
  /** ISO 8601 workflow time after which the batch compensates and fails without a signal. */
  deadline: string;
  /** Input fields a `retry` signal may correct, as dotted paths. */
  retryFields: string[];
  /** True when a retry submits a new job (the job failed) rather than running the stage again. */
  retrySubmitsNewJob: boolean;
  /** The batch input the stage ran with; a retry's corrections are merged into it. Holds no secret values. */
  input: Record<string, unknown>;
  /** The last `retry` signal that was rejected, and why; the stage keeps waiting. */
  rejectedRetry?: { at: string; message: string };
}

/** One undo step of a batch that failed for good or was cancelled. */
export interface CompensationRecord {
  action: 'cancelScoringJob' | 'deleteDatasetVersion' | 'deleteDatastore';
  /** Job name, `dataset:version` or datastore name. */
  target: string;
  /** `skipped`: the asset is kept, because `assetsOnFailure` is `keep`. */
  state: 'pending' | 'running' | 'completed' | 'failed' | 'skipped';
  /** Outcome of the step, or the reason it failed. */
  detail?: string;
}

/** The job's status and progress as the workflow last saw them. */
export interface JobSnapshot {
  status: string;
  progress: JobProgress;
  /** ISO 8601 workflow time of the observation. */
  observedAt: string;
}

/**
 * Result of the `status` query. `job` is the job as the workflow last saw it. While `waitForJob` runs, the live
 * progress is in that activity's heartbeat details, which `amlbatch status` and `amlbatch watch` read.
 */
export interface BatchStatus {
  workflowId: string;
  backend: Backend;
  state: BatchState;
  currentStage?: StageName;
  stages: StageRecord[];
  /** Set once the dataset is registered. */
  itemsTotal?: number;
  /** Items of the current follow-up or rescore job, which scores only the items left failed. */
  itemsSelected?: number;
  /** The results folder, once the first job's rows were collected; a rescore merges into it. */
  resultsFolder?: string;
  jobName?: string;
  dataset?: { name: string; version: string; created: boolean };
  datastore?: { name: string; created: boolean };
  job?: JobSnapshot;
  pendingFailure?: PendingFailure;
  compensations: CompensationRecord[];
  /** Failure message once the batch failed. */
  failure?: string;
}
