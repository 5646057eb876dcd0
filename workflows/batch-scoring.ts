import {
  ActivityFailure,
  ApplicationFailure,
  TimeoutFailure,
  isCancellation,
  patched,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import { RetryState } from '@temporalio/common';
import type { BatchActivities } from '../activities';
import type {
  AuthenticateResult,
  AzureStageSettings,
  CollectedResults,
  DatasetRef,
  ItemSelection,
  JobProgress,
  JobRef,
  StageInput,
} from '../activities/types';
import { BatchTracker } from './batch-status';
import { Compensations } from './compensations';
import { InvalidBatchInputError, validateBatchInput, type ResolvedBatchInput } from './input';
import { abortSignal, retrySignal, statusQuery } from './messages';
import { OperatorGate, type OperatorDecision } from './operator-gate';
import { OPERATOR_FIXABLE_FAILURES, retrySubmitsNewJob } from './operator-retry';
import { COMPENSATION_OPTIONS, STAGE_OPTIONS, type StageName } from './stage-options';
import type { BatchSummary, CompensationRecord, JobRecord } from './summary';

const { authenticate } = proxyActivities<BatchActivities>({ ...STAGE_OPTIONS.authenticate, summary: 'authenticate' });
const { checkVaultAccess } = proxyActivities<BatchActivities>({ ...STAGE_OPTIONS.checkVaultAccess, summary: 'check vault access' });
const { ensureDatastore } = proxyActivities<BatchActivities>({ ...STAGE_OPTIONS.ensureDatastore, summary: 'ensure datastore' });
const { registerDataset } = proxyActivities<BatchActivities>({ ...STAGE_OPTIONS.registerDataset, summary: 'register dataset' });
const { selectItems } = proxyActivities<BatchActivities>({ ...STAGE_OPTIONS.selectItems, summary: 'select items' });
const { submitScoringJob } = proxyActivities<BatchActivities>({ ...STAGE_OPTIONS.submitScoringJob, summary: 'submit scoring job' });
const { waitForJob } = proxyActivities<BatchActivities>({ ...STAGE_OPTIONS.waitForJob, summary: 'wait for job' });
const { collectResults } = proxyActivities<BatchActivities>({ ...STAGE_OPTIONS.collectResults, summary: 'collect results' });
const { cancelScoringJob } = proxyActivities<BatchActivities>({ ...COMPENSATION_OPTIONS.cancelScoringJob, summary: 'undo: cancel job' });
const { deleteDatasetVersion } = proxyActivities<BatchActivities>({
  ...COMPENSATION_OPTIONS.deleteDatasetVersion,
  summary: 'undo: delete dataset version',
});
const { deleteDatastore } = proxyActivities<BatchActivities>({ ...COMPENSATION_OPTIONS.deleteDatastore, summary: 'undo: delete datastore' });

/**
 * Marks histories written by the workflow code that compensates, waits for operators and upserts search
 * attributes. Batches recorded before that code (test/histories/*-v1.json) have no marker, so `patched` returns
 * false while they replay, and they keep their old path. That path has no search attribute upserts, no operator
 * wait and no compensation activities, because each would add commands their histories do not contain. Remove the
 * old path with `deprecatePatch` once no batch started before this marker can still be running or replayed.
 */
const DURABLE_BATCH_PATCH = 'durable-batch';

/**
 * Scores every file of a folder with a Python entry script as one parallel job, stage by stage: authenticate, check
 * vault access, ensure datastore, register dataset, submit scoring job, wait for the job, collect results.
 *
 * Takes one JSON object (see `BatchScoringInput`), validated before any stage runs. An invalid input fails the
 * workflow at once with an `InvalidInput` failure naming each bad field. Returns a `BatchSummary`.
 *
 * A stage that fails for a reason a person can fix waits up to `operatorRetryTimeout` seconds for a `retry` signal
 * (optionally with corrected input fields) or an `abort` signal. A batch that fails for good or is cancelled undoes
 * what it created, newest first: it cancels the job and, with `assetsOnFailure: "remove_created"`, deletes the
 * dataset version and datastore registration it created. A cancelled batch ends as cancelled unless an undo step
 * failed; then it fails with `CompensationFailed`, so nothing left behind goes unnoticed.
 */
export async function batchScoring(rawInput: unknown): Promise<BatchSummary> {
  const { workflowId } = workflowInfo();
  const tracker = new BatchTracker(workflowId);
  const gate = new OperatorGate(tracker);
  setHandler(statusQuery, () => tracker.status, {
    description: 'State, current stage, each stage state and timing, a failure waiting for an operator, job progress and undo steps',
  });
  setHandler(retrySignal, (corrections) => gate.retry(corrections), {
    description:
      'Runs the failed stage again. Optional argument: corrected input fields as a JSON merge patch, e.g. {"errorThreshold": 10}; ' +
      'the status query lists the fields the stage allows',
  });
  setHandler(abortSignal, (request) => gate.abort(request), {
    description: 'Gives up on the failed stage: the batch undoes what it created and fails. Optional argument: {"reason": "..."}',
  });

  let input: ResolvedBatchInput;
  try {
    input = validateBatchInput(rawInput);
  } catch (error) {
    if (error instanceof InvalidBatchInputError) {
      tracker.finish('failed', { failure: error.message, note: `**Invalid input**\n\n${error.message}` });
      throw ApplicationFailure.create({ message: error.message, type: 'InvalidInput', nonRetryable: true, details: [error.problems] });
    }
    throw error;
  }

  const durable = patched(DURABLE_BATCH_PATCH);
  tracker.start(input.backend, durable);
  const run = new BatchRun(workflowId, rawInput as Record<string, unknown>, input, tracker, gate, durable);
  try {
    return await run.execute();
  } catch (error) {
    throw await run.fail(error);
  }
}

/** Thrown by `BatchRun.stage` when a stage failed for good; `fail` turns it into the workflow's failure. */
class StageFailedError extends Error {
  constructor(
    readonly stage: StageName,
    readonly failure: StageFailure,
    readonly resolution: 'not_fixable' | 'operator_aborted' | 'operator_timed_out' | 'no_operator_wait',
    /** The error the stage's activity threw, an `ActivityFailure`, which becomes the workflow failure's cause. */
    readonly activityError: unknown,
    readonly abortReason?: string,
  ) {
    super(`stage ${stage} failed: ${failure.message}`);
    this.name = 'StageFailedError';
  }
}

/** Thrown by `BatchRun.stage` after an operator retried a failed job: the job loop submits a new job. */
class NewJobRequested extends Error {
  constructor() {
    super('an operator retried a failed job, which needs a new submission');
    this.name = 'NewJobRequested';
  }
}

/** A stage failure the caller chose to handle itself, such as a failed job that a follow-up round finishes. */
class AcceptedFailure {
  constructor(readonly failure: StageFailure) {}
}

/** The end of a job, as the collect stage needs it. */
interface JobEnd {
  status: 'Completed' | 'Failed' | 'Canceled';
  progress: JobProgress;
}

const NO_PROGRESS: JobProgress = { miniBatchesTotal: 0, miniBatchesSucceeded: 0, miniBatchesFailed: 0, itemsTotal: 0, itemsSucceeded: 0, itemsFailed: 0 };

interface StageFailure {
  message: string;
  type: string;
  /** Whether an operator can fix it, so the stage waits for a `retry` or `abort` signal. */
  fixable: boolean;
}

/** One run of the batch: its current input (an operator's retry may correct it), stage results and undo steps. */
class BatchRun {
  private readonly saga: Compensations;
  private auth: AuthenticateResult | undefined;

  constructor(
    private readonly workflowId: string,
    private rawInput: Record<string, unknown>,
    private input: ResolvedBatchInput,
    private readonly tracker: BatchTracker,
    private readonly gate: OperatorGate,
    /** False while replaying a history from before compensation and operator retries (see DURABLE_BATCH_PATCH). */
    private readonly durable: boolean,
  ) {
    this.saga = new Compensations(tracker.compensations, () => tracker.compensationChanged());
  }

  async execute(): Promise<BatchSummary> {
    const { workflowId, tracker } = this;

    this.auth = await this.stage('authenticate', () => authenticate({ backend: this.input.backend, ...this.azureInput() }));
    await this.stage('checkVaultAccess', () => checkVaultAccess({ ...this.context(), secretNames: this.input.secretNames }));

    const datastore = await this.stage('ensureDatastore', () => ensureDatastore({ ...this.context(), inputFolder: this.input.inputFolder }));
    tracker.datastoreEnsured({ name: datastore.datastoreName, created: datastore.created });
    if (datastore.created) {
      this.registerAssetUndo('deleteDatastore', datastore.datastoreName, () =>
        deleteDatastore({ ...this.context(), datastoreName: datastore.datastoreName, root: datastore.root }),
      );
    }

    const dataset = await this.stage('registerDataset', () =>
      registerDataset({
        ...this.context(),
        datastore,
        inputFolder: this.input.inputFolder,
        checks: {
          programArguments: this.input.programArguments,
          runInvocationTimeout: this.input.runInvocationTimeout,
          miniBatchSize: this.input.miniBatchSize,
          entryScript: this.input.entryScript,
          ...(this.input.codeDirectory !== undefined ? { codeDirectory: this.input.codeDirectory } : {}),
        },
      }),
    );
    tracker.datasetRegistered({ name: dataset.datasetName, version: dataset.version, created: dataset.created, itemCount: dataset.itemCount });
    if (dataset.created) {
      this.registerAssetUndo('deleteDatasetVersion', `${dataset.datasetName}:${dataset.version}`, () =>
        deleteDatasetVersion({ ...this.context(), datasetName: dataset.datasetName, version: dataset.version }),
      );
    }
    const datasetSummary = { name: dataset.datasetName, version: dataset.version, manifestSha256: dataset.manifestSha256 };
    const rescore = this.input.rescore;
    const base = {
      workflowId,
      backend: this.input.backend,
      itemsTotal: dataset.itemCount,
      dataset: datasetSummary,
      ...(rescore ? { rescoreOf: rescore.workflowId } : {}),
      ...(dataset.inputWarnings && dataset.inputWarnings.length > 0 ? { inputWarnings: dataset.inputWarnings } : {}),
    };

    if (rescore && dataset.version !== rescore.datasetVersion) {
      const failure: StageFailure = {
        message:
          `input folder ${this.input.inputFolder} now gives dataset version ${dataset.version}, not ${rescore.datasetVersion}, ` +
          `which batch ${rescore.workflowId} scored: the folder changed since, or it is another folder. A rescore only ` +
          'scores the items of the version the batch scored; restore the folder, or start a new batch for the changed folder',
        type: 'DatasetChanged',
        fixable: false,
      };
      this.tracker.stageFailed('registerDataset', failure);
      throw new StageFailedError('registerDataset', failure, 'not_fixable', undefined);
    }

    if (dataset.itemCount === 0) {
      tracker.skipPendingStages();
      tracker.finish('completed', { note: `**Nothing to score**: ${this.input.inputFolder} holds no files, so no job was submitted.` });
      return { ...base, outcome: 'nothing_to_score', itemsTotal: 0, itemsScored: 0, itemsFailed: 0, stages: tracker.status.stages };
    }

    // A batch's first job scores the whole dataset. A rescore's first job and every follow-up job score only the
    // items that the item ledger in the results folder records as failed.
    let selection: ItemSelection | undefined;
    if (rescore) {
      // An operator's retry may correct the results folder of a rescore, so the stage reads it from the input.
      selection = await this.selectFailedItems(dataset, () => this.input.resultsFolder!);
      if (selection.itemCount === 0) {
        tracker.skipPendingStages();
        tracker.finish('completed', { note: `**Nothing to rescore**: batch ${rescore.workflowId} has no failed items.` });
        return { ...base, outcome: 'nothing_to_rescore', itemsScored: 0, itemsFailed: 0, outputLocation: this.input.resultsFolder!, stages: tracker.status.stages };
      }
    } else {
      tracker.stageSkipped('selectItems');
    }

    let followUpsLeft = this.input.followUpRounds;
    for (;;) {
      // A failed or canceled job ends its wait without failing the stage in two cases. A later job can finish what
      // it left, or it was itself a job over selected items. In the second case those items stay failed, and the
      // batch ends with what the jobs before it scored.
      const { job, end } = await this.runJob(dataset, selection, followUpsLeft > 0 || selection !== undefined);
      const input = this.input;
      const resultsFolder = selection ? this.pinnedResultsFolder : input.resultsFolder;
      const collected = await this.stage('collectResults', () =>
        collectResults({
          ...this.context(),
          jobName: job.jobName,
          workflowId,
          ...(resultsFolder !== undefined ? { resultsFolder } : {}),
          outputAction: input.outputAction,
          appendRowFileName: input.appendRowFileName,
          dataset,
          ...(selection ? { selection } : {}),
          jobStatus: end.status,
          progress: end.progress,
        }),
      );
      // Later rounds must merge into the folder this one used, whatever an operator's retry changes later.
      this.pinnedResultsFolder = collected.resultsFolder;
      this.jobs.push({
        jobName: job.jobName,
        ...(collected.round !== undefined ? { round: collected.round } : {}),
        status: end.status,
        items: selection?.itemCount ?? dataset.itemCount,
        // The wait of a job that failed or was canceled ends without the job's last progress.
        ...(end.status === 'Completed'
          ? { miniBatches: { total: end.progress.miniBatchesTotal, succeeded: end.progress.miniBatchesSucceeded, failed: end.progress.miniBatchesFailed } }
          : {}),
      });
      this.tracker.resultsCollected(collected.resultsFolder);

      const ledger = collected.ledger;
      if (ledger && ledger.failed > 0 && followUpsLeft > 0) {
        followUpsLeft -= 1;
        selection = await this.selectFailedItems(dataset, () => collected.resultsFolder);
        if (selection.itemCount > 0) continue;
      }
      return this.finishScored(base, dataset, collected, this.jobs, end.progress);
    }
  }

  /** Every job of the batch so far, including jobs an operator's retry replaced. */
  private readonly jobs: JobRecord[] = [];
  /** Results folder of the batch's first collected job; follow-up jobs merge their rows into it. */
  private pinnedResultsFolder: string | undefined;
  /** The last job submission number used; each submission gets its own job name. */
  private submission = 0;

  private async selectFailedItems(dataset: DatasetRef, resultsFolder: () => string): Promise<ItemSelection> {
    const submission = this.submission + 1;
    const selection = await this.stage('selectItems', () => {
      this.pinnedResultsFolder = resultsFolder();
      return selectItems({ ...this.context(), workflowId: this.workflowId, submission, dataset, kind: 'failed_items', resultsFolder: resultsFolder() });
    });
    this.tracker.itemsSelected(selection.itemCount);
    return selection;
  }

  private finishScored(
    base: Pick<BatchSummary, 'workflowId' | 'backend' | 'itemsTotal' | 'dataset' | 'rescoreOf' | 'inputWarnings'>,
    dataset: DatasetRef,
    collected: CollectedResults,
    jobs: JobRecord[],
    lastProgress: JobProgress,
  ): BatchSummary {
    const { tracker, input } = this;
    const last = jobs[jobs.length - 1];
    // With append_row every item without a clean row failed: its mini-batch failed, its row reports an error, or
    // run() left it out. Azure ML reports no per-item counts, so this is also the only count both backends share.
    // The item ledger, when the collect built one, gives each item exactly one outcome, duplicate rows collapsed.
    const { ledger } = collected;
    const miniBatchesFailed = jobs.reduce((sum, job) => sum + (job.miniBatches?.failed ?? 0), 0);
    const itemsScored = ledger
      ? ledger.scored
      : input.outputAction === 'append_row'
        ? collected.rowCount - collected.failedRowCount
        : lastProgress.itemsSucceeded;
    const itemsFailed = ledger
      ? ledger.failed
      : input.outputAction === 'append_row'
        ? Math.max(0, dataset.itemCount - itemsScored)
        : lastProgress.itemsFailed;
    const rounds = jobs.length > 1 ? ` in ${jobs.length} jobs` : '';
    tracker.finish('completed', {
      note: `**Done**: ${itemsScored} of ${dataset.itemCount} items scored${rounds}, ${itemsFailed} failed.\n\nResults: \`${collected.resultsFolder}\``,
    });
    return {
      ...base,
      outcome: 'scored',
      itemsScored,
      itemsFailed,
      outputLocation: collected.resultsFolder,
      ...(collected.resultsFile !== undefined ? { resultsFile: collected.resultsFile } : {}),
      ...(collected.resultsSha256 !== undefined ? { resultsSha256: collected.resultsSha256 } : {}),
      jobName: last.jobName,
      miniBatches: {
        total: jobs.reduce((sum, job) => sum + (job.miniBatches?.total ?? 0), 0),
        succeeded: jobs.reduce((sum, job) => sum + (job.miniBatches?.succeeded ?? 0), 0),
        failed: miniBatchesFailed,
      },
      ...(jobs.length > 1 || base.rescoreOf !== undefined ? { jobs } : {}),
      ...(ledger ? { ledger } : {}),
      stages: tracker.status.stages,
    };
  }

  /**
   * Submits the job and waits for it. An operator's retry of a failed job submits a new one, numbered on from the
   * last, because a failed job cannot resume. Each job's undo step is registered before its submit, so a job that a
   * lost submit response left running is cancelled too. With `followUp`, a job that failed or was canceled by
   * someone else ends the wait instead of failing the stage: its rows are collected and a follow-up job scores
   * what it left.
   */
  private async runJob(dataset: DatasetRef, selection: ItemSelection | undefined, followUp: boolean): Promise<{ job: JobRef; end: JobEnd }> {
    for (;;) {
      this.submission += 1;
      const submission = this.submission;
      const undo = this.durable
        ? this.saga.add({
            action: 'cancelScoringJob',
            target: `submission ${submission}`,
            run: async () => describeCancel(await cancelScoringJob({ ...this.context(), workflowId: this.workflowId, submission })),
          })
        : undefined;

      const job = await this.stage('submitScoringJob', () =>
        submitScoringJob({
          ...this.context(),
          workflowId: this.workflowId,
          submission,
          dataset,
          ...(selection ? { selection } : {}),
          settings: jobSettings(this.input, selection !== undefined),
        }),
      );
      if (undo) undo.target = job.jobName;
      this.tracker.jobSubmitted(job.jobName);

      try {
        const waited = await this.stage(
          'waitForJob',
          () => waitForJob({ ...this.context(), jobName: job.jobName, pollInWindows: true }),
          followUp ? (failure) => failure.type === 'JobFailed' || failure.type === 'JobCanceled' : undefined,
        );
        if (waited instanceof AcceptedFailure) {
          const status = waited.failure.type === 'JobFailed' ? 'Failed' : 'Canceled';
          const progress = this.tracker.status.job?.progress ?? NO_PROGRESS;
          this.tracker.jobObserved(status, progress);
          return { job, end: { status, progress } };
        }
        this.tracker.jobObserved(waited.status, waited.progress);
        return { job, end: { status: 'Completed', progress: waited.progress } };
      } catch (error) {
        if (error instanceof NewJobRequested) {
          this.jobs.push({ jobName: job.jobName, status: 'Failed', items: selection?.itemCount ?? dataset.itemCount });
          continue;
        }
        throw error;
      }
    }
  }

  /**
   * Runs one stage, recording its state and timing. A failure an operator can fix waits for a `retry` or `abort`
   * signal. A retry runs the stage again with the corrected input. An abort, a timeout or any other failure throws
   * `StageFailedError`, and a cancellation passes through unchanged.
   */
  private async stage<T>(stage: StageName, body: () => Promise<T>): Promise<T>;
  private async stage<T>(stage: StageName, body: () => Promise<T>, accept: ((failure: StageFailure) => boolean) | undefined): Promise<T | AcceptedFailure>;
  private async stage<T>(stage: StageName, body: () => Promise<T>, accept?: (failure: StageFailure) => boolean): Promise<T | AcceptedFailure> {
    for (;;) {
      this.tracker.stageStarted(stage);
      let error: unknown;
      try {
        const result = await body();
        this.tracker.stageCompleted(stage);
        return result;
      } catch (caught) {
        error = caught;
      }

      if (isCancellation(error)) {
        this.tracker.stageCancelled(stage);
        throw error;
      }
      const failure = describeFailure(error);
      if (accept?.(failure)) {
        this.tracker.stageCompleted(stage);
        return new AcceptedFailure(failure);
      }
      this.tracker.stageFailed(stage, failure);
      if (!this.durable) throw new StageFailedError(stage, failure, 'no_operator_wait', error);
      if (!failure.fixable) throw new StageFailedError(stage, failure, 'not_fixable', error);
      if (this.input.operatorRetryTimeout === 0) throw new StageFailedError(stage, failure, 'no_operator_wait', error);

      let decision: OperatorDecision;
      try {
        decision = await this.gate.wait(stage, failure, this.rawInput, this.input.operatorRetryTimeout);
      } catch (waitError) {
        if (isCancellation(waitError)) this.tracker.stageCancelled(stage);
        throw waitError;
      }
      if (decision.kind === 'abort') throw new StageFailedError(stage, failure, 'operator_aborted', error, decision.reason);
      if (decision.kind === 'timed_out') throw new StageFailedError(stage, failure, 'operator_timed_out', error);

      this.rawInput = decision.corrected.raw;
      this.input = decision.corrected.resolved;
      if (retrySubmitsNewJob(stage, failure.type)) throw new NewJobRequested();
    }
  }

  /**
   * Turns what `execute` threw into the workflow's outcome, after undoing what the batch created. A cancellation
   * is rethrown, so the workflow ends as cancelled; a stage failure becomes a non-retryable `StageFailed` failure
   * whose details list the undo steps. Anything else is a bug in this code and is rethrown untouched, so the
   * workflow task fails and retries until a fixed worker is deployed.
   */
  async fail(error: unknown): Promise<unknown> {
    const cancelled = isCancellation(error);
    if (!cancelled && !(error instanceof StageFailedError)) return error;
    if (!this.durable) return error instanceof StageFailedError ? stageFailure(error, []) : error;

    this.tracker.compensating();
    const compensations = await this.saga.compensate();
    const failedSteps = compensations.filter((step) => step.state === 'failed');

    if (cancelled) {
      if (failedSteps.length === 0) {
        this.tracker.finish('cancelled', { note: '**Cancelled**: the job was stopped and the undo steps below ran.' });
        return error;
      }
      const message = `batch was cancelled, but ${describeFailedSteps(failedSteps)}`;
      this.tracker.finish('failed', { failure: message });
      return ApplicationFailure.create({
        message,
        type: 'CompensationFailed',
        nonRetryable: true,
        details: [{ compensations }],
        cause: error instanceof Error ? error : undefined,
      });
    }

    const failure = stageFailure(error as StageFailedError, compensations);
    this.tracker.finish('failed', { failure: failure.message });
    return failure;
  }

  /** Registers the undo of an asset this batch created, or records that the asset is kept. */
  private registerAssetUndo(action: 'deleteDatastore' | 'deleteDatasetVersion', target: string, remove: () => Promise<{ deleted: boolean }>): void {
    if (!this.durable) return;
    if (this.input.assetsOnFailure === 'remove_created') {
      this.saga.add({ action, target, run: async () => ((await remove()).deleted ? 'deleted' : 'already gone') });
    } else {
      this.saga.add({ action, target, keptBecause: 'kept: assetsOnFailure is "keep"' });
    }
  }

  /** Backend and Azure settings every stage after authentication takes, from the current (possibly corrected) input. */
  private context(): StageInput {
    const azure = this.input.azure;
    const resolved = this.auth?.azure;
    if (!azure || !resolved) return { backend: this.input.backend, ...this.azureInput() };
    // Later Azure stages work in the workspace and vault that authentication resolved.
    const settings: AzureStageSettings = { ...azure, workspace: resolved.workspace, keyVaultUrl: azure.keyVaultUrl ?? resolved.keyVaultUrl };
    return { backend: this.input.backend, azure: settings };
  }

  private azureInput(): { azure?: AzureStageSettings } {
    return this.input.azure ? { azure: this.input.azure } : {};
  }
}

/**
 * Returns the job settings of the input. A job over selected items, which all failed before, uses a mini-batch
 * size of 1, so an item that fails again cannot fail the items beside it or replace their failure reason.
 */
function jobSettings(input: ResolvedBatchInput, selected: boolean) {
  return {
    ...(input.codeDirectory !== undefined ? { codeDirectory: input.codeDirectory } : {}),
    entryScript: input.entryScript,
    programArguments: input.programArguments,
    miniBatchSize: selected ? 1 : input.miniBatchSize,
    ...(input.processCount !== undefined ? { processCount: input.processCount } : {}),
    runInvocationTimeout: input.runInvocationTimeout,
    maxRetries: input.maxRetries,
    errorThreshold: input.errorThreshold,
    miniBatchErrorThreshold: input.miniBatchErrorThreshold,
    outputAction: input.outputAction,
    appendRowFileName: input.appendRowFileName,
  };
}

/**
 * Classifies a stage's failure. An operator can fix it when the stage's retries ran out (or its schedule-to-close
 * time did), or when it failed at once with one of `OPERATOR_FIXABLE_FAILURES`.
 */
function describeFailure(error: unknown): StageFailure {
  if (!(error instanceof ActivityFailure)) {
    return { message: error instanceof Error ? error.message : String(error), type: 'Error', fixable: false };
  }
  const cause = error.cause;
  const message = cause?.message ?? error.message;
  const type =
    cause instanceof ApplicationFailure ? (cause.type ?? 'Error') : cause instanceof TimeoutFailure ? `Timeout${cause.timeoutType ? `:${cause.timeoutType}` : ''}` : 'Error';
  const exhausted = error.retryState === RetryState.MAXIMUM_ATTEMPTS_REACHED || error.retryState === RetryState.TIMEOUT;
  return { message, type, fixable: exhausted || OPERATOR_FIXABLE_FAILURES.includes(type) };
}

/** Builds the workflow's failure for a stage that failed for good, naming any undo step that failed too. */
function stageFailure(error: StageFailedError, compensations: CompensationRecord[]): ApplicationFailure {
  const failedSteps = compensations.filter((step) => step.state === 'failed');
  const undo = failedSteps.length > 0 ? `; and ${describeFailedSteps(failedSteps)}` : '';
  return ApplicationFailure.create({
    message: `${error.message}${undo}`,
    type: 'StageFailed',
    nonRetryable: true,
    details: [
      {
        stage: error.stage,
        failureType: error.failure.type,
        resolution: error.resolution,
        ...(error.abortReason !== undefined ? { abortReason: error.abortReason } : {}),
        compensations,
      },
    ],
    cause: error.activityError instanceof Error ? error.activityError : undefined,
  });
}

function describeFailedSteps(steps: CompensationRecord[]): string {
  const list = steps.map((step) => `${step.action} ${step.target} (${step.detail ?? 'no reason given'})`).join(', ');
  return `undoing it failed: ${list}; clean these up by hand`;
}

function describeCancel(result: { jobName: string; outcome: string; status?: string }): string {
  if (result.outcome === 'not_found') return 'no job was created';
  if (result.outcome === 'canceled') return 'cancelled';
  return `already ended: ${result.status ?? 'unknown status'}`;
}
