/**
 * Inputs and results of the compensation activities: the undo steps of a batch that failed for good or was
 * cancelled. Like the stage types, every value is small JSON and names assets, never secret values.
 */
import type { StageInput } from './types';

export interface CancelJobInput extends StageInput {
  workflowId: string;
  /** The submission whose job to cancel; the backend derives the job name as `submitScoringJob` does. */
  submission: number;
}

export interface CancelJobResult {
  jobName: string;
  /**
   * `canceled`: this call cancelled a running job. `already_ended`: the job had reached a terminal status, or was
   * finalizing and then reached one. `not_found`: no job of that name exists, so the submit never created it.
   */
  outcome: 'canceled' | 'already_ended' | 'not_found';
  /** The job's terminal status, in Azure ML's `JobStatus` terms; absent when no job exists. */
  status?: string;
}

export interface DeleteDatasetVersionInput extends StageInput {
  datasetName: string;
  version: string;
}

export interface DeleteDatastoreInput extends StageInput {
  datastoreName: string;
  /** The root the batch registered; a local registration with another root is not deleted. */
  root: string;
}

export interface DeleteAssetResult {
  /** False when the asset was already gone. */
  deleted: boolean;
}
