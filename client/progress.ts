import type { BatchDescription } from './batch-client';

const BAR_WIDTH = 30;

/**
 * Renders one line of batch progress: a bar of items done (scored or failed) out of the total, mini-batch counts
 * and the current stage. Before the job reports progress it shows the stage alone. For a batch that waits for an
 * operator or undoes its work, the line shows that instead.
 */
export function renderProgressLine(description: BatchDescription): string {
  const batch = description.batch;
  if (batch?.state === 'awaiting_operator' && batch.pendingFailure) {
    return `stage ${batch.pendingFailure.stage} failed, waiting for an operator: amlbatch retry ${description.workflowId} or amlbatch abort ${description.workflowId}`;
  }
  if (batch?.state === 'compensating') return 'undoing what the batch created';
  const stage = batch?.currentStage ?? description.status.toLowerCase();
  const progress = description.job?.progress;
  if (!progress || progress.itemsTotal === 0) return `stage ${stage}`;

  const done = progress.itemsSucceeded + progress.itemsFailed;
  const fraction = Math.min(1, done / progress.itemsTotal);
  const filled = Math.round(fraction * BAR_WIDTH);
  const bar = `${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}`;
  const percent = Math.floor(fraction * 100);
  const failed = progress.itemsFailed > 0 ? `, ${progress.itemsFailed} failed` : '';
  return (
    `[${bar}] ${percent}% ${done}/${progress.itemsTotal} items${failed}, ` +
    `mini-batches ${progress.miniBatchesSucceeded + progress.miniBatchesFailed}/${progress.miniBatchesTotal}, ` +
    `job ${description.job?.status ?? 'unknown'}, stage ${stage}`
  );
}
