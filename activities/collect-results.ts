import { Context, log } from '@temporalio/activity';
import { classifyFailures } from './errors';
import { selectBackend } from './backends/registry';
import type { ActivityDependencies } from './dependencies';
import { buildBatchLedger } from './ledger/batch-ledger';
import type { CollectResultsInput, CollectedResults } from './types';

/**
 * Stage 7: merges the job's appended rows into the batch's results file as a new round, counts them and builds
 * the item ledger beside them over every round so far. Rows and ledger records never enter history, and neither
 * does the list of rounds: only this job's round number does.
 */
export function createCollectResults(deps: ActivityDependencies) {
  return async function collectResults(input: CollectResultsInput): Promise<CollectedResults> {
    return classifyFailures(async () => {
      const { rounds = [], ...collected } = await selectBackend(deps.backends, input.backend).collectResults(input);
      // The ledger covers every round so far: their rows, failure records and the last round's no-result reason.
      const ledger = await buildBatchLedger({ ...collected, rounds }, Context.current().cancellationSignal);
      const round = rounds.find((candidate) => candidate.jobName === input.jobName)?.round;
      log.info('Results collected', { backend: input.backend, jobName: input.jobName, round, jobStatus: input.jobStatus, ...collected, ledger });
      return { ...collected, ...(round !== undefined ? { round } : {}), ...(ledger ? { ledger } : {}) };
    });
  };
}
