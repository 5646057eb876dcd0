import { log } from '@temporalio/activity';
import { classifyFailures } from './errors';
import { withHeartbeats } from './heartbeat';
import { selectBackend } from './backends/registry';
import type { ActivityDependencies } from './dependencies';
import type { DatasetRef, RegisterDatasetInput } from './types';

/**
 * Stage 4: lists the input folder into a manifest, runs the input checks on it (see dataset-input-checks.ts) and
 * registers it as a dataset version. An input error fails the stage with `InvalidInput` before anything is
 * registered; warnings are returned in `inputWarnings` and logged. The manifest stays in storage; only its
 * location, hash and counts are returned. Heartbeats while listing, with the count of files listed so far, so a
 * huge folder is not mistaken for a stuck activity.
 */
export function createRegisterDataset(deps: ActivityDependencies) {
  return async function registerDataset(input: RegisterDatasetInput): Promise<DatasetRef> {
    return withHeartbeats((keepalive) =>
      classifyFailures(async () => {
        const dataset = await selectBackend(deps.backends, input.backend).registerDataset(input, (filesListed) =>
          keepalive.beat({ filesListed }),
        );
        log.info('Dataset registered', {
          backend: input.backend,
          datasetName: dataset.datasetName,
          version: dataset.version,
          itemCount: dataset.itemCount,
          created: dataset.created,
        });
        if (dataset.inputWarnings !== undefined && dataset.inputWarnings.length > 0) {
          log.warn('Input checks found problems that do not block the batch', {
            backend: input.backend,
            inputFolder: input.inputFolder,
            datasetName: dataset.datasetName,
            version: dataset.version,
            warnings: dataset.inputWarnings,
          });
        }
        return dataset;
      }),
    );
  };
}
