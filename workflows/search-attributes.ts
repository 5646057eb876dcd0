import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/**
 * Custom search attributes that `batchScoring` upserts as it runs, so batches can be listed by stage, backend and
 * dataset, e.g. `AmlbatchStage = "awaiting_operator"`. Each must be registered in the namespace before a batch
 * runs: a workflow task that upserts an unregistered attribute fails and is retried until someone registers it.
 * The dev servers amlbatch starts register them (`common/dev-server.ts`).
 */
export const AMLBATCH_STAGE = defineSearchAttributeKey('AmlbatchStage', SearchAttributeType.KEYWORD);
export const AMLBATCH_BACKEND = defineSearchAttributeKey('AmlbatchBackend', SearchAttributeType.KEYWORD);
export const AMLBATCH_DATASET = defineSearchAttributeKey('AmlbatchDataset', SearchAttributeType.KEYWORD);

/** Every amlbatch search attribute with its type name, as `temporal operator search-attribute create` takes them. */
export const AMLBATCH_SEARCH_ATTRIBUTES: ReadonlyArray<{ name: string; type: 'Keyword' }> = [
  AMLBATCH_STAGE,
  AMLBATCH_BACKEND,
  AMLBATCH_DATASET,
].map((key) => ({ name: key.name, type: 'Keyword' as const }));

/**
 * Values of `AmlbatchStage` besides the stage names: where a batch waits or how it ended. A batch that waits for
 * an operator shows `awaiting_operator`; the failed stage is in the `status` query.
 */
export type BatchStageValue = 'awaiting_operator' | 'compensating' | 'completed' | 'failed' | 'cancelled';
