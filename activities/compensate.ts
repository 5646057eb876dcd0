import { log } from '@temporalio/activity';
import { classifyFailures } from './errors';
import { withHeartbeats } from './heartbeat';
import { selectBackend } from './backends/registry';
import type {
  CancelJobInput,
  CancelJobResult,
  DeleteAssetResult,
  DeleteDatasetVersionInput,
  DeleteDatastoreInput,
} from './compensation-types';
import type { ActivityDependencies } from './dependencies';

/**
 * Compensation: cancels the batch's scoring job unless it already ended, and waits until it reaches a terminal
 * status, so no job keeps running (and, on Azure, billing) after its batch failed or was cancelled.
 */
export function createCancelScoringJob(deps: ActivityDependencies) {
  return async function cancelScoringJob(input: CancelJobInput): Promise<CancelJobResult> {
    return withHeartbeats((keepalive) =>
      classifyFailures(async () => {
        const result = await selectBackend(deps.backends, input.backend).cancelScoringJob(input, {
          onPoll: (status) => keepalive.beat({ status }),
        });
        log.info('Scoring job cancel finished', { backend: input.backend, ...result });
        return result;
      }),
    );
  };
}

/** Compensation: deletes the dataset version this batch registered. */
export function createDeleteDatasetVersion(deps: ActivityDependencies) {
  return async function deleteDatasetVersion(input: DeleteDatasetVersionInput): Promise<DeleteAssetResult> {
    return withHeartbeats(() =>
      classifyFailures(async () => {
        const result = await selectBackend(deps.backends, input.backend).deleteDatasetVersion(input);
        log.info('Dataset version deleted', { backend: input.backend, datasetName: input.datasetName, version: input.version, ...result });
        return result;
      }),
    );
  };
}

/** Compensation: deletes the datastore registration this batch created; the data it points at is not touched. */
export function createDeleteDatastore(deps: ActivityDependencies) {
  return async function deleteDatastore(input: DeleteDatastoreInput): Promise<DeleteAssetResult> {
    return withHeartbeats(() =>
      classifyFailures(async () => {
        const result = await selectBackend(deps.backends, input.backend).deleteDatastore(input);
        log.info('Datastore deleted', { backend: input.backend, datastoreName: input.datastoreName, ...result });
        return result;
      }),
    );
  };
}
