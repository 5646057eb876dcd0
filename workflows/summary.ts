import type { Backend } from './input';
import type { StageName } from './stage-options';

export type StageState = 'pending' | 'running' | 'completed' | 'failed' | 'skipped';

/** One stage's state and timing, as shown by the `status` query and in the batch summary. */
export interface StageRecord {
  stage: StageName;
  state: StageState;
  /** ISO 8601 workflow time the stage started. */
  startedAt?: string;
  /** Milliseconds from start to end, retries included. */
  durationMs?: number;
  /** Failure message when `state` is `failed`. */
  error?: string;
}

/** The `batchScoring` workflow's result. */
export interface BatchSummary {
  workflowId: string;
  backend: Backend;
  /** `nothing_to_score` when the input folder held no files: no job was submitted. */
  outcome: 'scored' | 'nothing_to_score';
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
  jobName?: string;
  miniBatches?: { total: number; succeeded: number; failed: number };
  stages: StageRecord[];
}

/** What the `status` query returns while the batch runs. */
export interface BatchStatus {
  workflowId: string;
  backend: Backend;
  currentStage?: StageName;
  stages: StageRecord[];
  /** Set once the dataset is registered. */
  itemsTotal?: number;
  jobName?: string;
}
