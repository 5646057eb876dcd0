import {
  ActivityFailure,
  ApplicationFailure,
  defineQuery,
  isCancellation,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { BatchActivities } from '../activities';
import type { AzureStageSettings } from '../activities/types';
import { InvalidBatchInputError, validateBatchInput, type ResolvedBatchInput } from './input';
import { STAGE_OPTIONS, STAGE_ORDER, type StageName } from './stage-options';
import type { BatchStatus, BatchSummary, StageRecord } from './summary';

const { authenticate } = proxyActivities<BatchActivities>({ ...STAGE_OPTIONS.authenticate, summary: 'authenticate' });
const { checkVaultAccess } = proxyActivities<BatchActivities>({ ...STAGE_OPTIONS.checkVaultAccess, summary: 'check vault access' });
const { ensureDatastore } = proxyActivities<BatchActivities>({ ...STAGE_OPTIONS.ensureDatastore, summary: 'ensure datastore' });
const { registerDataset } = proxyActivities<BatchActivities>({ ...STAGE_OPTIONS.registerDataset, summary: 'register dataset' });
const { submitScoringJob } = proxyActivities<BatchActivities>({ ...STAGE_OPTIONS.submitScoringJob, summary: 'submit scoring job' });
const { waitForJob } = proxyActivities<BatchActivities>({ ...STAGE_OPTIONS.waitForJob, summary: 'wait for job' });
const { collectResults } = proxyActivities<BatchActivities>({ ...STAGE_OPTIONS.collectResults, summary: 'collect results' });

export const statusQuery = defineQuery<BatchStatus>('status');

/**
 * Scores every file of a folder with a Python entry script as one parallel job, stage by stage: authenticate, check
 * vault access, ensure datastore, register dataset, submit scoring job, wait for the job, collect results.
 *
 * Takes one JSON object (see `BatchScoringInput`), validated before any stage runs; an invalid input fails the
 * workflow at once with an `InvalidInput` failure naming each bad field. Returns a `BatchSummary`.
 */
export async function batchScoring(rawInput: unknown): Promise<BatchSummary> {
  const { workflowId } = workflowInfo();
  const stages: StageRecord[] = STAGE_ORDER.map((stage) => ({ stage, state: 'pending' }));
  const status: BatchStatus = { workflowId, backend: 'local', stages };
  setHandler(statusQuery, () => status, { description: 'Current stage, each stage state and timing, item count and job name' });

  let input: ResolvedBatchInput;
  try {
    input = validateBatchInput(rawInput);
  } catch (error) {
    if (error instanceof InvalidBatchInputError) {
      setCurrentDetails(`**Invalid input**\n\n${error.message}`);
      throw ApplicationFailure.create({ message: error.message, type: 'InvalidInput', nonRetryable: true, details: [error.problems] });
    }
    throw error;
  }
  status.backend = input.backend;
  const { backend } = input;

  /** Runs one stage, recording its state and timing for the query, the UI's current details and the summary. */
  async function runStage<T>(stage: StageName, body: () => Promise<T>): Promise<T> {
    const record = stages.find((s) => s.stage === stage)!;
    const started = Date.now();
    record.state = 'running';
    record.startedAt = new Date(started).toISOString();
    status.currentStage = stage;
    publishDetails(status);
    try {
      const result = await body();
      record.state = 'completed';
      return result;
    } catch (error) {
      if (isCancellation(error)) {
        record.state = 'failed';
        record.error = 'cancelled';
        throw error;
      }
      record.state = 'failed';
      record.error = failureMessage(error);
      publishDetails(status);
      throw ApplicationFailure.create({
        message: `stage ${stage} failed: ${record.error}`,
        type: 'StageFailed',
        nonRetryable: true,
        details: [{ stage, failureType: failureType(error) }],
        cause: error instanceof Error ? error : undefined,
      });
    } finally {
      record.durationMs = Date.now() - started;
    }
  }

  const auth = await runStage('authenticate', () => authenticate({ backend, ...(input.azure ? { azure: input.azure } : {}) }));
  // Later Azure stages work in the workspace and vault that authentication resolved.
  const azure: AzureStageSettings | undefined =
    input.azure && auth.azure ? { ...input.azure, workspace: auth.azure.workspace, keyVaultUrl: auth.azure.keyVaultUrl } : undefined;
  const context = { backend, ...(azure ? { azure } : {}) };

  await runStage('checkVaultAccess', () => checkVaultAccess({ ...context, secretNames: input.secretNames }));
  const datastore = await runStage('ensureDatastore', () => ensureDatastore({ ...context, inputFolder: input.inputFolder }));
  const dataset = await runStage('registerDataset', () => registerDataset({ ...context, datastore, inputFolder: input.inputFolder }));
  status.itemsTotal = dataset.itemCount;
  const datasetSummary = { name: dataset.datasetName, version: dataset.version, manifestSha256: dataset.manifestSha256 };

  if (dataset.itemCount === 0) {
    for (const record of stages) if (record.state === 'pending') record.state = 'skipped';
    status.currentStage = undefined;
    setCurrentDetails(`**Nothing to score**: ${input.inputFolder} holds no files, so no job was submitted.`);
    return {
      workflowId,
      backend,
      outcome: 'nothing_to_score',
      itemsTotal: 0,
      itemsScored: 0,
      itemsFailed: 0,
      dataset: datasetSummary,
      stages,
    };
  }

  const job = await runStage('submitScoringJob', () =>
    submitScoringJob({ ...context, workflowId, submission: 1, dataset, settings: jobSettings(input) }),
  );
  status.jobName = job.jobName;
  const outcome = await runStage('waitForJob', () => waitForJob({ ...context, jobName: job.jobName }));
  const collected = await runStage('collectResults', () =>
    collectResults({
      ...context,
      jobName: job.jobName,
      workflowId,
      ...(input.resultsFolder !== undefined ? { resultsFolder: input.resultsFolder } : {}),
      outputAction: input.outputAction,
      appendRowFileName: input.appendRowFileName,
      dataset,
      progress: outcome.progress,
    }),
  );

  const { progress } = outcome;
  // With append_row every item without a clean row failed: its mini-batch failed, its row reports an error, or
  // run() left it out. Azure ML reports no per-item counts, so this is also the only count both backends share.
  const itemsScored =
    input.outputAction === 'append_row' ? collected.rowCount - collected.failedRowCount : progress.itemsSucceeded;
  const itemsFailed =
    input.outputAction === 'append_row' ? Math.max(0, dataset.itemCount - itemsScored) : progress.itemsFailed;
  status.currentStage = undefined;
  const summary: BatchSummary = {
    workflowId,
    backend,
    outcome: 'scored',
    itemsTotal: dataset.itemCount,
    itemsScored,
    itemsFailed,
    outputLocation: collected.resultsFolder,
    ...(collected.resultsFile !== undefined ? { resultsFile: collected.resultsFile } : {}),
    ...(collected.resultsSha256 !== undefined ? { resultsSha256: collected.resultsSha256 } : {}),
    dataset: datasetSummary,
    jobName: job.jobName,
    miniBatches: { total: progress.miniBatchesTotal, succeeded: progress.miniBatchesSucceeded, failed: progress.miniBatchesFailed },
    stages,
  };
  setCurrentDetails(
    `**Done**: ${itemsScored} of ${dataset.itemCount} items scored, ${itemsFailed} failed.\n\nResults: \`${collected.resultsFolder}\``,
  );
  return summary;
}

function jobSettings(input: ResolvedBatchInput) {
  return {
    ...(input.codeDirectory !== undefined ? { codeDirectory: input.codeDirectory } : {}),
    entryScript: input.entryScript,
    programArguments: input.programArguments,
    miniBatchSize: input.miniBatchSize,
    ...(input.processCount !== undefined ? { processCount: input.processCount } : {}),
    runInvocationTimeout: input.runInvocationTimeout,
    maxRetries: input.maxRetries,
    errorThreshold: input.errorThreshold,
    miniBatchErrorThreshold: input.miniBatchErrorThreshold,
    outputAction: input.outputAction,
    appendRowFileName: input.appendRowFileName,
  };
}

/** Shows the stage table in the Temporal UI's "Current Details" panel. */
function publishDetails(status: BatchStatus): void {
  const rows = status.stages.map((s) => `| ${s.stage} | ${s.state} | ${s.durationMs !== undefined ? `${s.durationMs} ms` : ''} |`);
  const header = status.currentStage ? `**Stage**: ${status.currentStage}` : '**Batch**';
  setCurrentDetails([header, '', '| stage | state | duration |', '| --- | --- | --- |', ...rows].join('\n'));
}

/** The innermost message of an activity failure: what the stage itself said, not the SDK's wrapper text. */
function failureMessage(error: unknown): string {
  if (error instanceof ActivityFailure && error.cause) return error.cause.message;
  return error instanceof Error ? error.message : String(error);
}

function failureType(error: unknown): string | undefined {
  if (error instanceof ActivityFailure && error.cause instanceof ApplicationFailure) return error.cause.type ?? undefined;
  return undefined;
}
