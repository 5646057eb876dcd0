import { log } from '@temporalio/activity';
import { classifyFailures } from './errors';
import { selectBackend } from './backends/registry';
import type { ActivityDependencies } from './dependencies';
import type { DatastoreRef, EnsureDatastoreInput } from './types';

/** Stage 3: registers the datastore that holds the input folder, or reuses one with the same settings. */
export function createEnsureDatastore(deps: ActivityDependencies) {
  return async function ensureDatastore(input: EnsureDatastoreInput): Promise<DatastoreRef> {
    return classifyFailures(async () => {
      const datastore = await selectBackend(deps.backends, input.backend).ensureDatastore(input);
      log.info('Datastore ready', { backend: input.backend, ...datastore });
      return datastore;
    });
  };
}
