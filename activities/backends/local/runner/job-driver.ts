/**
 * Job driver of the local parallel runner: `node dist/activities/backends/local/runner/job-driver.js <jobFolder>`.
 *
 * It runs one local job with the semantics of an Azure ML parallel run step. It splits the manifest into
 * mini-batches, runs them on `processCount` Python worker processes, retries failed ones, applies the error
 * thresholds, appends rows for append_row and keeps status.json current. `startLocalJob` starts it detached, so
 * it outlives the activity that started it. A driver killed at any moment can be started again: it replays
 * journal.jsonl and runs only the mini-batches that the journal does not record.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../../../../common/project-paths';
import { DriverLog, errorFields } from './driver-log';
import type { JobPaths } from './job-files';
import {
  acquireDriverLock,
  isTerminalState,
  jobPaths,
  outputFilePath,
  readStatusFile,
  releaseDriverLock,
  writeFileAtomically,
} from './job-files';
import type { LocalJobProgress, LocalJobSpec, LocalJobStatus } from './job-spec';
import type { MiniBatch } from './manifest-reader';
import { countManifestItems, readMiniBatches } from './manifest-reader';
import type { WorkerEvent, WorkerExit } from './python-worker';
import { PythonWorker } from './python-worker';
import type { MiniBatchFailure } from './result-store';
import { ResultStore } from './result-store';
import { validateLocalJobSpec } from './validate-spec';

/** Interval of the driver's housekeeping: journal commit, cancel-request check and status heartbeat. */
const TICK_MS = 200;
/** Minimum time between two status writes caused by progress; the tick writes any change left over. */
const STATUS_MIN_INTERVAL_MS = 100;
/** status.json is rewritten at least this often, so `updatedAt` shows that the driver is alive. */
const STATUS_HEARTBEAT_MS = 1000;

const WORKER_SHIM = 'activities/backends/local/runner/prs_worker.py';

type JobOutcome =
  | { state: 'Completed' }
  | { state: 'Canceled'; reason: string }
  | { state: 'Failed'; error: { message: string; traceback?: string } };

/** Runs one job from its job folder until it reaches a terminal state. */
class JobDriver {
  private readonly spec: LocalJobSpec;
  private readonly entryScriptPath: string;
  private readonly progress: LocalJobProgress = {
    miniBatchesTotal: 0,
    miniBatchesSucceeded: 0,
    miniBatchesFailed: 0,
    itemsTotal: 0,
    itemsSucceeded: 0,
    itemsFailed: 0,
  };
  private readonly startedAt: string;

  private store: ResultStore | undefined;
  private source: AsyncGenerator<MiniBatch> | undefined;
  /** Mini-batches to run again: failed attempts with retries left, and second runs of `faults.repeatMiniBatches`. */
  private readonly retryQueue: MiniBatch[] = [];
  /** Attempts started so far for each mini-batch that has not finished yet. */
  private readonly attempts = new Map<number, number>();
  /** The indexes in `faults.repeatMiniBatches`: each of these mini-batches runs a second time after its first success. */
  private readonly repeatIndexes: ReadonlySet<number>;
  /** Mini-batches whose next run is that second run. */
  private readonly repeatRuns = new Set<number>();
  private lastFailure: { miniBatch: number; failure: MiniBatchFailure } | undefined;

  private readonly workers = new Set<PythonWorker>();
  private nextWorkerNumber: number;

  private phase: 'running' | 'finishing' = 'running';
  private pumping = false;
  private pumpRequested = false;
  private tickTimer: NodeJS.Timeout | undefined;
  private lastStatusWrite = 0;
  private statusDirty = false;
  private resolveDone: ((exitCode: number) => void) | undefined;

  constructor(
    private readonly paths: JobPaths,
    private readonly log: DriverLog,
    spec: LocalJobSpec,
    previous: LocalJobStatus | undefined,
  ) {
    this.spec = spec;
    this.entryScriptPath = path.join(spec.codeDirectory, spec.entryScript);
    this.repeatIndexes = new Set(spec.faults?.repeatMiniBatches ?? []);
    this.startedAt = previous?.startedAt ?? new Date().toISOString();
    this.nextWorkerNumber = firstFreeWorkerNumber(paths.logs);
  }

  /** Runs the job and resolves with the process exit code once the final status is written. */
  async run(): Promise<number> {
    const done = new Promise<number>((resolve) => {
      this.resolveDone = resolve;
    });
    process.on('SIGTERM', () => this.requestCancel('SIGTERM'));
    this.tickTimer = setInterval(() => this.tick(), TICK_MS);

    try {
      await this.prepare();
    } catch (error) {
      this.log.error('Job preparation failed', errorFields(error));
      void this.finish({ state: 'Failed', error: { message: (error as Error).message } });
      return done;
    }
    if (this.phase !== 'running') return done;

    this.writeStatus('Running');
    if (this.thresholdExceeded()) return done;

    // Second runs that a previous driver did not finish are work too.
    const remaining =
      this.progress.miniBatchesTotal - this.progress.miniBatchesSucceeded - this.progress.miniBatchesFailed + this.repeatRuns.size;
    if (remaining === 0) {
      this.complete();
      return done;
    }
    const processCount = Math.min(this.spec.processCount, remaining);
    this.log.info('Starting worker processes', { processCount, miniBatchesRemaining: remaining });
    for (let slot = 0; slot < processCount; slot += 1) this.startWorker();
    return done;
  }

  /** Counts the manifest, replays the journal and opens the output. Throws when the job cannot run. */
  private async prepare(): Promise<void> {
    mkdirSync(this.paths.outputs, { recursive: true });
    const itemsTotal = await countManifestItems(this.spec.manifestPath);
    this.progress.itemsTotal = itemsTotal;
    this.progress.miniBatchesTotal = Math.ceil(itemsTotal / this.spec.miniBatchSize);

    const { store, replay } = await ResultStore.open(this.paths, outputFilePath(this.paths.folder, this.spec));
    this.store = store;
    for (const index of this.repeatIndexes) {
      if (index >= this.progress.miniBatchesTotal) {
        throw new Error(
          `faults.repeatMiniBatches lists mini-batch ${index}, but the job has ${this.progress.miniBatchesTotal} mini-batches ` +
            `numbered from 0; list only indexes below ${this.progress.miniBatchesTotal}`,
        );
      }
    }
    // A second run that a previous driver did not finish runs now. The source yields such a mini-batch once more,
    // although the journal records it as finished.
    const pendingRepeats = new Set(
      [...this.repeatIndexes].filter(
        (index) =>
          replay.finishedMiniBatches.has(index) && !replay.failedMiniBatches.has(index) && !replay.repeatedMiniBatches.has(index),
      ),
    );
    for (const index of pendingRepeats) this.repeatRuns.add(index);
    this.progress.miniBatchesSucceeded = replay.miniBatchesSucceeded;
    this.progress.miniBatchesFailed = replay.miniBatchesFailed;
    this.progress.itemsSucceeded = replay.itemsSucceeded;
    this.progress.itemsFailed = replay.itemsFailed;
    this.lastFailure = replay.lastFailure;
    this.log.info('Journal replayed', {
      itemsTotal,
      miniBatchesTotal: this.progress.miniBatchesTotal,
      miniBatchesFinished: replay.finishedMiniBatches.size,
      outputBytes: replay.outputBytes,
      droppedOutputBytes: replay.droppedOutputBytes,
      repeatRunsPending: pendingRepeats.size,
    });

    const finished = replay.finishedMiniBatches;
    for (const index of finished) {
      if (index >= this.progress.miniBatchesTotal) {
        throw new Error(
          `journal ${this.paths.journal} records mini-batch ${index}, but manifest ${this.spec.manifestPath} now has only ` +
            `${this.progress.miniBatchesTotal} mini-batches; the manifest changed after the job started, so start a new job`,
        );
      }
    }
    this.source = readMiniBatches(
      this.spec.manifestPath,
      this.spec.inputRoot,
      this.spec.miniBatchSize,
      (index) => finished.has(index) && !pendingRepeats.has(index),
    );
  }

  // NOTE: init() has no time limit here. Azure ML fails a job whose processes make no progress for a while, and
  // that limit is not reproduced, so an init() that hangs keeps the job Running until it is canceled.
  private startWorker(): void {
    const number = this.nextWorkerNumber;
    this.nextWorkerNumber += 1;
    const worker = new PythonWorker({
      number,
      spec: this.spec,
      shimPath: path.join(projectRoot(), WORKER_SHIM),
      logFile: path.join(this.paths.logs, `worker-${number}.log`),
      outputsFolder: this.paths.outputs,
      onEvent: (source, event) => this.onWorkerEvent(source, event),
    });
    this.workers.add(worker);
    worker.start();
    this.log.info('Worker process started', { worker: number, workerPid: worker.pid, logFile: worker.logFile });
  }

  private onWorkerEvent(worker: PythonWorker, event: WorkerEvent): void {
    try {
      this.handleWorkerEvent(worker, event);
    } catch (error) {
      this.crash(error);
    }
  }

  private handleWorkerEvent(worker: PythonWorker, event: WorkerEvent): void {
    switch (event.type) {
      case 'ready':
        this.log.info('Worker process ready', { worker: worker.number, workerPid: worker.pid });
        break;
      case 'result':
        this.completeAttempt(event.batch, event.rows, event.count);
        break;
      case 'error':
        this.failAttempt(event.batch, event.failure, worker);
        break;
      case 'timeout':
        this.log.warn('Mini-batch timed out; killing the worker process', {
          miniBatch: event.batch.index,
          worker: worker.number,
          workerPid: worker.pid,
          runInvocationTimeout: event.timeoutSeconds,
        });
        this.failAttempt(
          event.batch,
          {
            errorType: 'TimeoutError',
            message:
              `run() did not return within runInvocationTimeout (${event.timeoutSeconds} s) for mini-batch ${event.batch.index}; ` +
              'the worker process was killed and a new one started',
          },
          worker,
        );
        break;
      case 'init_error':
        if (this.phase !== 'running') break;
        this.log.error('Entry script init failed', { worker: worker.number, workerPid: worker.pid, failure: event.failure });
        void this.finish({ state: 'Failed', error: { message: event.failure.message, traceback: event.failure.traceback } });
        return;
      case 'exit':
        this.onWorkerExit(worker, event.exit);
        break;
    }
    this.pump();
  }

  private onWorkerExit(worker: PythonWorker, exit: WorkerExit): void {
    this.workers.delete(worker);
    const fields = { worker: worker.number, workerPid: worker.pid, code: exit.code, signal: exit.signal, stateAtExit: exit.stateAtExit };
    const exitDescription = describeExit(exit);

    if (this.phase !== 'running' || exit.requested) {
      this.log.info('Worker process exited', fields);
    } else if (exit.spawnError !== undefined) {
      this.log.error('Worker process could not start', { ...fields, ...errorFields(exit.spawnError) });
      void this.finish({
        state: 'Failed',
        error: {
          message:
            `could not start the Python interpreter ${this.spec.pythonExecutable}: ${exit.spawnError.message}; ` +
            'set pythonExecutable to an installed Python 3 interpreter',
        },
      });
      return;
    } else if (exit.stateAtExit === 'starting') {
      this.log.error('Worker process exited during init', fields);
      void this.finish({
        state: 'Failed',
        error: {
          message: `worker process ${worker.number} running ${this.entryScriptPath} ${exitDescription} before init() returned; see ${worker.logFile}`,
          traceback: worker.readLogTail(),
        },
      });
      return;
    } else if (exit.batch !== undefined) {
      this.log.warn('Worker process exited during run', { ...fields, miniBatch: exit.batch.index });
      this.failAttempt(
        exit.batch,
        {
          errorType: 'WorkerExited',
          message: `worker process ${worker.number} ${exitDescription} while run() processed mini-batch ${exit.batch.index}; see ${worker.logFile}`,
          traceback: worker.readLogTail(),
        },
        worker,
      );
    } else {
      // No mini-batch is lost; a replacement starts below if any remain.
      this.log.warn('Worker process exited while idle', fields);
    }

    if (this.phase === 'running' && this.hasWorkToDispatch()) this.startWorker();
  }

  private hasWorkToDispatch(): boolean {
    return this.source !== undefined || this.retryQueue.length > 0;
  }

  /** Dispatches mini-batches to idle workers; a call made while a dispatch runs makes that dispatch loop again. */
  private pump(): void {
    if (this.pumping) {
      this.pumpRequested = true;
      return;
    }
    this.pumping = true;
    this.dispatch()
      .then(() => {
        this.pumping = false;
        this.finishIfDone();
      })
      .catch((error: unknown) => {
        this.pumping = false;
        this.crash(error);
      });
  }

  private async dispatch(): Promise<void> {
    do {
      this.pumpRequested = false;
      for (;;) {
        if (this.phase !== 'running') return;
        const worker = this.findIdleWorker();
        if (worker === undefined) break;
        const batch = await this.nextBatch();
        if (batch === undefined) break;
        if (this.phase !== 'running' || worker.state !== 'idle') {
          this.retryQueue.unshift(batch);
          continue;
        }
        this.attempts.set(batch.index, (this.attempts.get(batch.index) ?? 0) + 1);
        worker.run(batch);
      }
    } while (this.pumpRequested);
  }

  private findIdleWorker(): PythonWorker | undefined {
    for (const worker of this.workers) if (worker.state === 'idle') return worker;
    return undefined;
  }

  /** Returns a mini-batch waiting for a retry, else the next one from the manifest, else undefined. */
  private async nextBatch(): Promise<MiniBatch | undefined> {
    const retry = this.retryQueue.shift();
    if (retry !== undefined) return retry;
    if (this.source === undefined) return undefined;
    const next = await this.source.next();
    if (next.done === true) {
      this.source = undefined;
      return undefined;
    }
    return next.value;
  }

  private completeAttempt(batch: MiniBatch, rows: string[] | undefined, count: number): void {
    const items = batch.items.length;
    if (count !== items) {
      const problem =
        count < items
          ? 'return one element per item: Azure ML counts the missing elements as failed items and fails the mini-batch'
          : 'return exactly one element per item: extra elements would duplicate or misalign rows';
      this.failAttempt(batch, {
        errorType: 'RowCountMismatch',
        message: `run() in ${this.entryScriptPath} returned ${count} elements for mini-batch ${batch.index} of ${items} items; ${problem}`,
      });
      return;
    }

    const attempts = this.attempts.get(batch.index) ?? 1;
    this.attempts.delete(batch.index);
    if (this.repeatRuns.delete(batch.index)) {
      this.requireStore().recordSuccess(batch.index, items, rows, attempts, true);
      this.log.info('Mini-batch ran a second time; its rows are in the output twice', {
        miniBatch: batch.index,
        attempt: attempts,
        rows: rows?.length ?? 0,
      });
      return;
    }

    this.requireStore().recordSuccess(batch.index, items, rows, attempts);
    this.progress.miniBatchesSucceeded += 1;
    this.progress.itemsSucceeded += items;
    this.markProgress();
    if (this.repeatIndexes.has(batch.index)) {
      // faults.repeatMiniBatches: run the mini-batch again, as Azure ML may after a timeout, and keep both runs' rows.
      this.repeatRuns.add(batch.index);
      this.retryQueue.push(batch);
    }
  }

  /** Records a failed attempt; the mini-batch is queued again unless it has used all its retries. */
  private failAttempt(batch: MiniBatch, failure: MiniBatchFailure, worker?: PythonWorker): void {
    const attempts = this.attempts.get(batch.index) ?? 1;
    const fields = {
      miniBatch: batch.index,
      attempt: attempts,
      maxRetries: this.spec.maxRetries,
      worker: worker?.number,
      errorType: failure.errorType,
      errorMessage: failure.message,
    };
    if (attempts <= this.spec.maxRetries) {
      this.log.warn('Mini-batch attempt failed; retrying', fields);
      this.retryQueue.push(batch);
      return;
    }
    if (this.repeatRuns.delete(batch.index)) {
      // The first run succeeded and its rows stay, so the counts and thresholds are not affected.
      this.log.warn('Second run of a mini-batch failed after its last attempt; its rows are in the output once', {
        ...fields,
        traceback: failure.traceback,
      });
      this.attempts.delete(batch.index);
      this.requireStore().recordFailure(batch.index, batch.items.length, failure, attempts, true);
      return;
    }

    this.log.error('Mini-batch failed after its last attempt', { ...fields, traceback: failure.traceback });
    this.attempts.delete(batch.index);
    this.requireStore().recordFailure(batch.index, batch.items.length, failure, attempts);
    this.progress.miniBatchesFailed += 1;
    this.progress.itemsFailed += batch.items.length;
    this.lastFailure = { miniBatch: batch.index, failure };
    this.markProgress();
    this.thresholdExceeded();
  }

  /** Fails the job when failed items or failed mini-batches exceed their thresholds; -1 disables a threshold. */
  private thresholdExceeded(): boolean {
    const { errorThreshold, miniBatchErrorThreshold } = this.spec;
    let message: string | undefined;
    if (errorThreshold >= 0 && this.progress.itemsFailed > errorThreshold) {
      message = `${this.progress.itemsFailed} failed items exceed errorThreshold ${errorThreshold}`;
    } else if (miniBatchErrorThreshold >= 0 && this.progress.miniBatchesFailed > miniBatchErrorThreshold) {
      message = `${this.progress.miniBatchesFailed} failed mini-batches exceed miniBatchErrorThreshold ${miniBatchErrorThreshold}`;
    }
    if (message === undefined) return false;

    const last = this.lastFailure;
    if (last !== undefined) message += `; the last failed mini-batch, ${last.miniBatch}, failed with: ${last.failure.message}`;
    this.log.error('Error threshold exceeded; failing the job', { progress: this.progress });
    void this.finish({ state: 'Failed', error: { message, traceback: last?.failure.traceback } });
    return true;
  }

  private finishIfDone(): void {
    if (this.phase !== 'running' || this.pumping || this.hasWorkToDispatch()) return;
    for (const worker of this.workers) if (worker.state === 'busy') return;
    this.complete();
  }

  private complete(): void {
    if (this.spec.outputAction === 'append_row' && this.progress.itemsSucceeded === 0) {
      void this.finish({
        state: 'Failed',
        error: {
          message:
            'no mini-batch succeeded, so append_row has no rows to write; Azure ML fails such a job with ' +
            'NoResultToAppendError ("There is no succeeded mini batch item returned from run()")' +
            (this.lastFailure === undefined ? '' : `. The last failed mini-batch, ${this.lastFailure.miniBatch}, failed with: ${this.lastFailure.failure.message}`),
          traceback: this.lastFailure?.failure.traceback,
        },
      });
      return;
    }
    void this.finish({ state: 'Completed' });
  }

  private requestCancel(reason: string): void {
    if (this.phase === 'running') {
      this.log.info('Cancel requested', { reason });
      void this.finish({ state: 'Canceled', reason });
      return;
    }
    // Already finishing: end the workers' shutdown() now instead of waiting for it.
    for (const worker of this.workers) void worker.kill();
  }

  /** Ends the job: stops the workers, commits the journal and writes the final status. */
  private async finish(outcome: JobOutcome): Promise<void> {
    if (this.phase === 'finishing') return;
    this.phase = 'finishing';
    const reason = outcome.state === 'Canceled' ? outcome.reason : undefined;
    this.log.info('Job finishing', { state: outcome.state, reason, progress: this.progress });

    // Journal the finished mini-batches first, so a driver killed while workers run shutdown() loses none of them.
    let finalOutcome = outcome;
    try {
      this.store?.commit();
    } catch (error) {
      this.log.error('Journal commit failed', errorFields(error));
      finalOutcome = { state: 'Failed', error: { message: `could not write the job's output or journal: ${(error as Error).message}` } };
    }

    // Completed jobs let every worker call shutdown(). Otherwise only idle workers do, because a busy one may hang.
    const graceMs = this.spec.runInvocationTimeout * 1000;
    const stops = [...this.workers].map((worker) => {
      const graceful = outcome.state === 'Completed' || (outcome.state === 'Failed' && worker.state === 'idle');
      return graceful ? worker.stop(graceMs) : worker.kill();
    });
    await Promise.all(stops);

    try {
      this.store?.close();
    } catch (error) {
      this.log.error('Journal commit failed', errorFields(error));
      finalOutcome = { state: 'Failed', error: { message: `could not write the job's output or journal: ${(error as Error).message}` } };
    }
    clearInterval(this.tickTimer);

    let exitCode = finalOutcome.state === 'Failed' ? 1 : 0;
    try {
      this.writeStatus(finalOutcome.state, finalOutcome.state === 'Failed' ? finalOutcome.error : undefined);
      this.log.info('Job finished', { state: finalOutcome.state, progress: this.progress });
    } catch (error) {
      this.log.error('Final status write failed', errorFields(error));
      exitCode = 1;
    }
    this.resolveDone?.(exitCode);
  }

  /** Fails the job on an error in the driver itself, such as a full disk. */
  private crash(error: unknown): void {
    this.log.error('Job driver error', errorFields(error));
    if (this.phase !== 'running') return;
    const message = error instanceof Error ? error.message : String(error);
    void this.finish({ state: 'Failed', error: { message: `the local job driver failed: ${message}` } });
  }

  private tick(): void {
    try {
      if (this.phase === 'running') {
        this.store?.commit();
        if (existsSync(this.paths.cancelRequest)) this.requestCancel('cancel-requested file');
      }
      // The heartbeat continues while the job finishes, because workers may take a while in shutdown().
      const due = Date.now() - this.lastStatusWrite >= STATUS_HEARTBEAT_MS;
      if (this.statusDirty || due) this.writeStatus('Running');
    } catch (error) {
      this.crash(error);
    }
  }

  private markProgress(): void {
    if (Date.now() - this.lastStatusWrite >= STATUS_MIN_INTERVAL_MS) this.writeStatus('Running');
    else this.statusDirty = true;
  }

  private writeStatus(state: LocalJobStatus['state'], error?: LocalJobStatus['error']): void {
    const now = new Date();
    const status: LocalJobStatus = {
      jobName: this.spec.jobName,
      state,
      progress: { ...this.progress },
      error,
      startedAt: this.startedAt,
      endedAt: isTerminalState(state) ? now.toISOString() : undefined,
      updatedAt: now.toISOString(),
      driverPid: process.pid,
    };
    writeFileAtomically(this.paths.status, `${JSON.stringify(status, null, 2)}\n`);
    this.lastStatusWrite = now.getTime();
    this.statusDirty = false;
  }

  private requireStore(): ResultStore {
    if (this.store === undefined) throw new Error('result store used before the journal was replayed');
    return this.store;
  }
}

function describeExit(exit: WorkerExit): string {
  if (exit.signal !== null) return `was killed by ${exit.signal}`;
  return `exited with code ${String(exit.code)}`;
}

/** Returns the first n with no logs/worker-<n>.log yet, so a restarted driver does not mix its logs into old ones. */
function firstFreeWorkerNumber(logsFolder: string): number {
  let next = 0;
  for (const name of readdirSync(logsFolder)) {
    const match = /^worker-(\d+)\.log$/.exec(name);
    if (match !== null) next = Math.max(next, Number(match[1]) + 1);
  }
  return next;
}

/** Writes a terminal status when the driver stops before a JobDriver exists, such as for an invalid job.json. */
function writeEarlyStatus(paths: JobPaths, state: 'Failed' | 'Canceled', previous: LocalJobStatus | undefined, error?: LocalJobStatus['error']): void {
  const now = new Date().toISOString();
  const status: LocalJobStatus = {
    jobName: previous?.jobName ?? path.basename(paths.folder),
    state,
    progress: previous?.progress ?? {
      miniBatchesTotal: 0,
      miniBatchesSucceeded: 0,
      miniBatchesFailed: 0,
      itemsTotal: 0,
      itemsSucceeded: 0,
      itemsFailed: 0,
    },
    error,
    startedAt: previous?.startedAt,
    endedAt: now,
    updatedAt: now,
    driverPid: process.pid,
  };
  writeFileAtomically(paths.status, `${JSON.stringify(status, null, 2)}\n`);
}

async function main(argv: readonly string[]): Promise<number> {
  const jobFolder = argv[2];
  if (jobFolder === undefined || argv.length !== 3) {
    process.stderr.write('usage: node job-driver.js <jobFolder>\n');
    return 2;
  }
  const paths = jobPaths(jobFolder);
  if (!existsSync(paths.spec)) {
    process.stderr.write(`local job not found: ${paths.spec} does not exist; create the job with startLocalJob\n`);
    return 2;
  }
  mkdirSync(paths.logs, { recursive: true });
  const log = new DriverLog(paths.driverLog);
  log.info('Job driver starting', { jobFolder: paths.folder });

  const lock = await acquireDriverLock(paths);
  if (!lock.acquired) {
    log.info('Another job driver holds the lock; exiting', { holderPid: lock.holderPid });
    log.close();
    return 0;
  }

  try {
    let previous: LocalJobStatus | undefined;
    try {
      previous = readStatusFile(paths);
    } catch (error) {
      log.warn('Status file unreadable; starting from the journal', errorFields(error));
    }
    if (previous !== undefined && isTerminalState(previous.state)) {
      log.info('Job already finished; nothing to do', { state: previous.state });
      return 0;
    }
    if (existsSync(paths.cancelRequest)) {
      log.info('Cancel requested before the driver started', {});
      writeEarlyStatus(paths, 'Canceled', previous);
      return 0;
    }

    let spec: LocalJobSpec;
    try {
      spec = validateLocalJobSpec(JSON.parse(readFileSync(paths.spec, 'utf8')), paths.spec);
    } catch (error) {
      log.error('Job spec invalid', errorFields(error));
      writeEarlyStatus(paths, 'Failed', previous, { message: (error as Error).message });
      return 1;
    }

    return await new JobDriver(paths, log, spec, previous).run();
  } catch (error) {
    log.error('Job driver failed', errorFields(error));
    throw error;
  } finally {
    releaseDriverLock(paths);
    log.close();
  }
}

main(process.argv).then(
  (exitCode) => process.exit(exitCode),
  (error: unknown) => {
    process.stderr.write(`job driver failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
