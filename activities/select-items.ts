import { log } from '@temporalio/activity';
import { classifyFailures } from './errors';
import { selectBackend } from './backends/registry';
import type { ActivityDependencies } from './dependencies';
import type { ItemSelection, SelectItemsInput } from './types';

/**
 * Stage between registering the dataset and submitting: picks the items a follow-up job scores, those the
 * batch's item ledger records as failed, and makes them the job's input. Runs only for follow-up rounds and
 * rescores; a batch's first job scores the whole dataset.
 */
export function createSelectItems(deps: ActivityDependencies) {
  return async function selectItems(input: SelectItemsInput): Promise<ItemSelection> {
    return classifyFailures(async () => {
      const selection = await selectBackend(deps.backends, input.backend).selectItems(input);
      log.info('Items selected', {
        backend: input.backend,
        kind: selection.kind,
        submission: input.submission,
        itemCount: selection.itemCount,
        totalBytes: selection.totalBytes,
        inputRoot: selection.inputRoot,
      });
      return selection;
    });
  };
}
