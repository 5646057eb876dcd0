/**
 * Background execution of submitted jobs. Each job moves through the statuses of an Azure ML job:
 * NotStarted → Queued → Preparing → Running → Finalizing → Completed or Failed, and CancelRequested → Canceled
 * when canceled. Preparing downloads the code and input from blob storage, Running is the local parallel runner,
 * Finalizing uploads the append_row output and the logs. A job that fails or is canceled while the runner runs
 * also uploads the rows appended so far.
 */
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { cancelLocalJob, localJobOutputPath, readLocalJobStatus, startLocalJob } from '../../../activities/backends/local/runner/local-job';
import type { LocalJobFaults, LocalJobStatus } from '../../../activities/backends/local/runner/job-spec';
import { faultsProblem } from '../../../activities/backends/local/runner/validate-spec';
import { errorFields, type DriverLog } from '../../../activities/backends/local/runner/driver-log';
import { ARTIFACT_DATASTORE_NAME } from './datastores';
import { uploadJobLogs, type FinalJobStatus, type JobLogInput } from './job-logs';
import { JobPlanError, prepareJobPlan, type JobPlan } from './job-plan';
import { isTerminalStatus, type JobRecord, type JobStatus, type JobStore } from './jobs';
import type { UriResolver } from './storage-uris';

/** How often a running job's runner status file is read. */
const RUNNER_POLL_MS = 100;

export interface JobExecutionContext extends UriResolver {
  jobs: JobStore;
  /** Folder that contains one run folder per job. */
  workFolder: string;
  pythonExecutable: string;
  /** Milliseconds a job stays in each status before Running, so pollers can observe every status. */
  statusStepDelayMs: number;
  log: DriverLog;
}

/** Faults that the next submitted job runs with. */
interface NextJobFaults {
  /** The job fails with this reason without running. */
  failure?: string;
  /** Passed to the local runner as its `faults`. */
  runnerFaults?: LocalJobFaults;
}

interface Outcome {
  status: FinalJobStatus;
  reason?: string;
  traceback?: string;
  runner?: JobLogInput['runner'];
  outputUri?: string;
}

export class JobExecutor {
  private readonly executions = new Map<JobRecord, Promise<void>>();
  private readonly wakers = new Map<JobRecord, () => void>();
  private nextJobFaults: NextJobFaults = {};
  private runCount = 0;

  constructor(private readonly context: JobExecutionContext) {}

  /** Makes the next submitted job fail with `reason`, which its job_result.txt then states, without running it. */
  failNextJob(reason: string): void {
    this.nextJobFaults.failure = reason;
  }

  /**
   * Makes the local runner run the listed mini-batches (0-based indexes) of the next submitted job a second time
   * after their first success, so the job's append_row output has their rows twice, as Azure ML's at-least-once
   * parallel runtime can produce. Throws for an index list that is not distinct integers of 0 or more. An index
   * beyond the job's last mini-batch fails that job.
   */
  repeatMiniBatchesOfNextJob(indexes: readonly number[]): void {
    const runnerFaults: LocalJobFaults = { repeatMiniBatches: [...indexes] };
    const problem = faultsProblem(runnerFaults);
    if (problem !== undefined) throw new Error(`mini-batch indexes ${JSON.stringify(indexes)} are invalid: expected ${problem}`);
    this.nextJobFaults.runnerFaults = runnerFaults;
  }

  /** Starts running a newly created job in the background. */
  start(record: JobRecord): void {
    const faults = this.nextJobFaults;
    this.nextJobFaults = {};
    this.runCount += 1;
    const runFolder = path.join(this.context.workFolder, 'jobs', `${this.runCount}-${record.name}`);
    const execution = this.execute(record, runFolder, faults).finally(() => {
      this.executions.delete(record);
      this.wakers.delete(record);
    });
    this.executions.set(record, execution);
  }

  /**
   * Requests cancellation: the job shows CancelRequested at once and reaches Canceled once its processes have
   * stopped and its logs are written. A job in a terminal status is left as it is.
   */
  cancel(record: JobRecord, reason: string): void {
    if (isTerminalStatus(record.status) || record.cancelRequested) return;
    record.cancelRequested = true;
    this.context.jobs.setStatus(record, 'CancelRequested');
    this.context.log.info('Job cancel requested', { job: record.name, reason });
    this.wakers.get(record)?.();
  }

  /** Resolves when the job's execution has ended, at once for a job that is not running. */
  async settled(record: JobRecord): Promise<void> {
    await this.executions.get(record);
  }

  /** Cancels every running job and waits for all executions to end. */
  async stop(): Promise<void> {
    for (const record of this.executions.keys()) this.cancel(record, 'emulator stopping');
    await Promise.all(this.executions.values());
  }

  private async execute(record: JobRecord, runFolder: string, faults: NextJobFaults): Promise<void> {
    const { log } = this.context;
    log.info('Job execution started', { job: record.name, runFolder });
    let outcome: Outcome;
    try {
      outcome = await this.run(record, runFolder, faults);
    } catch (error) {
      log.error('Job execution failed', { job: record.name, ...errorFields(error) });
      outcome = { status: 'Failed', reason: `the emulator could not run the job: ${(error as Error).message}` };
    }

    if (outcome.status !== 'Canceled' && !record.cancelRequested) this.setStatus(record, 'Finalizing');
    if (record.cancelRequested && outcome.status !== 'Failed') outcome = { ...outcome, status: 'Canceled', reason: outcome.reason ?? 'cancel requested' };
    try {
      await this.uploadLogs(record, outcome);
    } catch (error) {
      log.error('Job log upload failed', { job: record.name, ...errorFields(error) });
      if (outcome.status === 'Completed') outcome = { status: 'Failed', reason: `could not write the job's logs: ${(error as Error).message}` };
    }
    this.context.jobs.setStatus(record, outcome.status);
    log.info('Job execution finished', { job: record.name, status: outcome.status, reason: outcome.reason });
  }

  private async run(record: JobRecord, runFolder: string, faults: NextJobFaults): Promise<Outcome> {
    for (const status of ['Queued', 'Preparing'] as const) {
      if (await this.pause(record)) return canceled();
      this.setStatus(record, status);
    }

    if (faults.failure !== undefined) {
      if (await this.pause(record)) return canceled();
      this.setStatus(record, 'Running');
      return { status: 'Failed', reason: faults.failure };
    }

    await mkdir(runFolder, { recursive: true });
    let plan: JobPlan;
    try {
      plan = await prepareJobPlan(this.context, record.name, record.properties, runFolder, this.context.pythonExecutable, faults.runnerFaults);
    } catch (error) {
      if (!(error instanceof JobPlanError)) throw error;
      this.context.log.warn('Job cannot run', { job: record.name, reason: error.message });
      return { status: 'Failed', reason: error.message };
    }
    if (record.cancelRequested) return canceled();

    this.setStatus(record, 'Running');
    const runnerStatus = await this.runLocally(record, plan);
    const runner = { folder: plan.runnerFolder, spec: plan.spec, status: runnerStatus };
    if (runnerStatus.state === 'Canceled' || runnerStatus.state === 'Failed') {
      this.setStatus(record, 'Finalizing');
      await this.uploadPartialOutput(record, plan);
    }
    if (runnerStatus.state === 'Canceled') return { status: 'Canceled', reason: 'cancel requested', runner };
    if (runnerStatus.state === 'Failed') {
      return { status: 'Failed', reason: runnerStatus.error?.message ?? 'the local runner reported a failure without a message', traceback: runnerStatus.error?.traceback, runner };
    }

    this.setStatus(record, 'Finalizing');
    if (plan.output === undefined) return { status: 'Completed', runner };
    const outputFile = localJobOutputPath(plan.runnerFolder, plan.spec);
    if (outputFile === undefined) throw new Error(`the local runner has no output file for append_row job ${record.name}`);
    await this.context.storage.uploadFile(plan.output.location, outputFile);
    return { status: 'Completed', runner, outputUri: plan.output.uri };
  }

  /** Runs the plan with the local runner and returns its terminal status; stops it when a cancel is requested. */
  private async runLocally(record: JobRecord, plan: JobPlan): Promise<LocalJobStatus> {
    await startLocalJob(plan.runnerFolder, plan.spec);
    let cancelSent = false;
    for (;;) {
      const status = await readLocalJobStatus(plan.runnerFolder);
      if (status.state === 'Completed' || status.state === 'Failed' || status.state === 'Canceled') return status;
      if (record.cancelRequested && !cancelSent) {
        cancelSent = true;
        await cancelLocalJob(plan.runnerFolder);
        continue;
      }
      if (cancelSent) await delay(RUNNER_POLL_MS);
      else await this.sleep(record, RUNNER_POLL_MS);
    }
  }

  /**
   * Uploads the rows that a failed or canceled job appended before it stopped to the job's output, so that a
   * follow-up job can score only the remaining items. A job that appended no rows gets no output file, like a job
   * that never ran. An upload error is logged and leaves the job's status and logs as they would be without it.
   *
   * NOTE: it is not confirmed that Azure ML keeps the append_row rows of a job that fails its error threshold or
   * is canceled. Its parallel runtime gathers the rows from per-worker temporary files, and may do so only when the
   * job finishes. A real job may then leave no output file, or fewer rows than the emulator uploads here.
   */
  private async uploadPartialOutput(record: JobRecord, plan: JobPlan): Promise<void> {
    if (plan.output === undefined) return;
    const outputFile = localJobOutputPath(plan.runnerFolder, plan.spec);
    if (outputFile === undefined) return;
    const bytes = await stat(outputFile).then(
      (info) => info.size,
      (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return 0;
        throw error;
      },
    );
    if (bytes === 0) return;
    try {
      await this.context.storage.uploadFile(plan.output.location, outputFile);
      this.context.log.info('Partial output uploaded', { job: record.name, output: plan.output.uri, bytes });
    } catch (error) {
      this.context.log.error('Partial output upload failed', { job: record.name, output: plan.output.uri, ...errorFields(error) });
    }
  }

  private async uploadLogs(record: JobRecord, outcome: Outcome): Promise<void> {
    const artifactStore = this.context.datastores.get(ARTIFACT_DATASTORE_NAME);
    if (artifactStore === undefined) throw new Error(`datastore ${ARTIFACT_DATASTORE_NAME} was deleted, so the job's logs have nowhere to go`);
    await uploadJobLogs(this.context.storage, String(artifactStore.properties.containerName), { jobName: record.name, ...outcome });
  }

  /** Changes the status unless a cancel request has set CancelRequested, which only a terminal status replaces. */
  private setStatus(record: JobRecord, status: JobStatus): void {
    if (record.cancelRequested) return;
    this.context.jobs.setStatus(record, status);
    this.context.log.info('Job status changed', { job: record.name, status });
  }

  /** Waits one status step; returns true when a cancel was requested before or during the wait. */
  private async pause(record: JobRecord): Promise<boolean> {
    await this.sleep(record, this.context.statusStepDelayMs);
    return record.cancelRequested;
  }

  /** Sleeps `ms`, or less when a cancel request wakes the job. */
  private sleep(record: JobRecord, ms: number): Promise<void> {
    if (record.cancelRequested) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wakers.set(record, done);
    });
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function canceled(): Outcome {
  return { status: 'Canceled', reason: 'cancel requested' };
}
