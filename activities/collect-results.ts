import { Context, log } from '@temporalio/activity';
import { classifyFailures } from './errors';
import { selectBackend } from './backends/registry';
import type { ActivityDependencies } from './dependencies';
import { buildBatchLedger } from './ledger/batch-ledger';
import type { CollectResultsInput, CollectedResults } from './types';

/**
 * Stage 7: streams the job's appended rows into the results folder, counts them and builds the item ledger beside
 * them. Rows and ledger records never enter history.
 */
export function createCollectResults(deps: ActivityDependencies) {
  return async function collectResults(input: CollectResultsInput): Promise<CollectedResults> {
    return classifyFailures(async () => {
      const collected = await selectBackend(deps.backends, input.backend).collectResults(input);
      const ledger = await buildBatchLedger(collected, Context.current().cancellationSignal);
      log.info('Results collected', { backend: input.backend, jobName: input.jobName, ...collected, ledger });
      return { ...collected, ...(ledger ? { ledger } : {}) };
    });
  };
}
