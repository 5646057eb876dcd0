import type { SearchAttributeUpdatePair } from '@temporalio/common';
import { setCurrentDetails, upsertSearchAttributes } from '@temporalio/workflow';
import type { JobProgress } from '../activities/types';
import type { Backend } from './input';
import { AMLBATCH_BACKEND, AMLBATCH_DATASET, AMLBATCH_STAGE, type BatchStageValue } from './search-attributes';
import { STAGE_ORDER, type StageName } from './stage-options';
import type { BatchState, BatchStatus, CompensationRecord, PendingFailure, StageRecord } from './summary';

/**
 * Keeps the batch's `status` query result, the Temporal UI's "Current Details" and the custom search attributes
 * in step with the workflow. Every method runs in workflow code, so times are workflow times and nothing here
 * touches the outside world except through the SDK.
 */
export class BatchTracker {
  readonly status: BatchStatus;
  /** False while replaying a history recorded before search attributes existed: upserts would change its commands. */
  private searchAttributesEnabled = false;
  /**
   * Search attribute changes not yet sent. They go out together with the next stage change, so each change adds one
   * history event, and a batch adds about one per stage.
   */
  private pendingAttributes: SearchAttributeUpdatePair[] = [];

  constructor(workflowId: string) {
    this.status = {
      workflowId,
      backend: 'local',
      state: 'running',
      stages: STAGE_ORDER.map((stage) => ({ stage, state: 'pending' })),
      compensations: [],
    };
  }

  get compensations(): CompensationRecord[] {
    return this.status.compensations;
  }

  /** Records the backend; with `searchAttributes` true the tracker upserts the search attributes from now on. */
  start(backend: Backend, searchAttributes: boolean): void {
    this.status.backend = backend;
    this.searchAttributesEnabled = searchAttributes;
    this.pendingAttributes.push({ key: AMLBATCH_BACKEND, value: backend });
  }

  stageStarted(stage: StageName): void {
    const record = this.record(stage);
    record.state = 'running';
    record.startedAt ??= new Date().toISOString();
    delete record.error;
    delete record.failureType;
    this.status.state = 'running';
    this.status.currentStage = stage;
    this.setStageAttribute(stage);
    this.publish();
  }

  stageCompleted(stage: StageName): void {
    this.endStage(stage, 'completed');
    this.publish();
  }

  stageFailed(stage: StageName, failure: { message: string; type: string }): void {
    const record = this.endStage(stage, 'failed');
    record.error = failure.message;
    record.failureType = failure.type;
    this.publish();
  }

  stageCancelled(stage: StageName): void {
    const record = this.endStage(stage, 'cancelled');
    record.error = 'cancelled';
    this.publish();
  }

  /** Marks a stage the batch does not need as skipped, unless it already ran. */
  stageSkipped(stage: StageName): void {
    const record = this.record(stage);
    if (record.state === 'pending') record.state = 'skipped';
  }

  /** Marks the stages that never ran, as when a folder with no files needs no job. */
  skipPendingStages(): void {
    for (const record of this.status.stages) if (record.state === 'pending') record.state = 'skipped';
  }

  awaitingOperator(pending: PendingFailure): void {
    const record = this.record(pending.stage);
    record.state = 'awaiting_operator';
    this.status.state = 'awaiting_operator';
    this.status.pendingFailure = pending;
    this.setStageAttribute('awaiting_operator');
    this.publish();
  }

  retryRejected(message: string): void {
    if (!this.status.pendingFailure) return;
    this.status.pendingFailure.rejectedRetry = { at: new Date().toISOString(), message };
    this.publish();
  }

  /**
   * Ends the operator wait of `stage`. A retry counts on the stage, which the caller then starts again; otherwise the
   * stage failed for good.
   */
  operatorDecided(stage: StageName, retried: boolean): void {
    delete this.status.pendingFailure;
    const record = this.record(stage);
    if (retried) record.operatorRetries = (record.operatorRetries ?? 0) + 1;
    else record.state = 'failed';
  }

  datasetRegistered(dataset: { name: string; version: string; created: boolean; itemCount: number }): void {
    this.status.dataset = { name: dataset.name, version: dataset.version, created: dataset.created };
    this.status.itemsTotal = dataset.itemCount;
    this.pendingAttributes.push({ key: AMLBATCH_DATASET, value: `${dataset.name}:${dataset.version}` });
  }

  datastoreEnsured(datastore: { name: string; created: boolean }): void {
    this.status.datastore = datastore;
  }

  /** Records how many items the next job scores, when a follow-up round or a rescore selected them. */
  itemsSelected(itemCount: number): void {
    this.status.itemsSelected = itemCount;
  }

  resultsCollected(resultsFolder: string): void {
    this.status.resultsFolder = resultsFolder;
  }

  jobSubmitted(jobName: string): void {
    this.status.jobName = jobName;
    delete this.status.job;
  }

  jobObserved(status: string, progress: JobProgress): void {
    this.status.job = { status, progress, observedAt: new Date().toISOString() };
  }

  compensating(): void {
    delete this.status.pendingFailure;
    this.status.state = 'compensating';
    this.status.currentStage = undefined;
    this.setStageAttribute('compensating');
    this.publish();
  }

  /** Publishes the compensation records after one of them changed. */
  compensationChanged(): void {
    this.publish();
  }

  /** Records how the batch ended; `note` is a line of markdown shown first in the current details. */
  finish(state: Exclude<BatchState, 'running' | 'awaiting_operator' | 'compensating'>, ending: { failure?: string; note?: string } = {}): void {
    this.status.state = state;
    this.status.currentStage = undefined;
    if (ending.failure !== undefined) this.status.failure = ending.failure;
    this.setStageAttribute(state);
    this.publish(ending.note);
  }

  /** Shows the batch at a glance in the Temporal UI's "Current Details" panel. */
  private publish(note?: string): void {
    setCurrentDetails(renderDetails(this.status, note));
  }

  private record(stage: StageName): StageRecord {
    const record = this.status.stages.find((candidate) => candidate.stage === stage);
    if (!record) throw new TypeError(`stage ${stage} has no record; STAGE_ORDER lists every stage`);
    return record;
  }

  private endStage(stage: StageName, state: StageRecord['state']): StageRecord {
    const record = this.record(stage);
    const now = Date.now();
    record.state = state;
    record.endedAt = new Date(now).toISOString();
    if (record.startedAt !== undefined) record.durationMs = now - Date.parse(record.startedAt);
    return record;
  }

  /** Upserts `AmlbatchStage` together with any other pending search attribute change. */
  private setStageAttribute(value: StageName | BatchStageValue): void {
    const updates = [...this.pendingAttributes, { key: AMLBATCH_STAGE, value }];
    this.pendingAttributes = [];
    if (this.searchAttributesEnabled) upsertSearchAttributes(updates);
  }
}

function renderDetails(status: BatchStatus, note?: string): string {
  const lines: string[] = note ? [note, ''] : [];
  const stage = status.currentStage ? `, stage **${status.currentStage}**` : '';
  lines.push(`**Batch**: ${status.state.replace('_', ' ')}${stage}`);

  const pending = status.pendingFailure;
  if (pending) {
    const { workflowId } = status;
    lines.push(
      '',
      `**Waiting for an operator**: stage \`${pending.stage}\` failed (${pending.failureType}): ${pending.message}`,
      '',
      `Fix the cause, then send the \`retry\` signal (\`amlbatch retry ${workflowId}\`), optionally with corrected input fields ` +
        `as JSON (\`--set field=value\`)${pending.retryFields.length > 0 ? `: ${pending.retryFields.join(', ')}` : ''}. ` +
        `Send \`abort\` (\`amlbatch abort ${workflowId}\`) to give up. Without a signal the batch fails at ${pending.deadline}.`,
    );
    if (pending.retrySubmitsNewJob) lines.push('', 'A retry submits a new job, because a failed job cannot resume.');
    if (pending.rejectedRetry) lines.push('', `Last retry rejected at ${pending.rejectedRetry.at}: ${pending.rejectedRetry.message}`);
  }
  if (status.failure) lines.push('', `**Failure**: ${status.failure}`);

  lines.push('', '| stage | state | duration |', '| --- | --- | --- |');
  for (const record of status.stages) {
    const duration = record.durationMs !== undefined ? `${record.durationMs} ms` : '';
    const retries = record.operatorRetries ? ` (retried ${record.operatorRetries}×)` : '';
    lines.push(`| ${record.stage} | ${record.state}${retries} | ${duration} |`);
  }

  if (status.dataset) lines.push('', `**Dataset**: ${status.dataset.name}:${status.dataset.version}, ${status.itemsTotal ?? 0} items`);
  if (status.jobName) {
    const job = status.job;
    const progress = job
      ? `: ${job.status}, ${job.progress.itemsSucceeded + job.progress.itemsFailed} of ${job.progress.itemsTotal} items done ` +
        `(${job.progress.itemsFailed} failed) at ${job.observedAt}`
      : '; live progress is in the waitForJob activity\'s heartbeat details';
    lines.push('', `**Job** ${status.jobName}${progress}`);
  }

  if (status.compensations.length > 0) {
    lines.push('', '**Compensation**', '', '| action | target | state | detail |', '| --- | --- | --- | --- |');
    for (const step of status.compensations) lines.push(`| ${step.action} | ${step.target} | ${step.state} | ${step.detail ?? ''} |`);
  }
  return lines.join('\n');
}
