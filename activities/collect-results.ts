import { log } from '@temporalio/activity';
import { classifyFailures } from './errors';
import { selectBackend } from './backends/registry';
import type { ActivityDependencies } from './dependencies';
import type { CollectResultsInput, CollectedResults } from './types';

/** Stage 7: streams the job's appended rows into the results folder and counts them; rows never enter history. */
export function createCollectResults(deps: ActivityDependencies) {
  return async function collectResults(input: CollectResultsInput): Promise<CollectedResults> {
    return classifyFailures(async () => {
      const collected = await selectBackend(deps.backends, input.backend).collectResults(input);
      log.info('Results collected', { backend: input.backend, jobName: input.jobName, ...collected });
      return collected;
    });
  };
}
