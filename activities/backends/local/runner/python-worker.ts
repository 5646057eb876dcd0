import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { closeSync, openSync, readSync, fstatSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { runnerChildEnvironment } from './child-environment';
import type { LocalJobSpec } from './job-spec';
import type { MiniBatch } from './manifest-reader';
import type { MiniBatchFailure } from './result-store';

/** Placeholder in `programArguments` that Azure ML replaces with the parallel job's input folder. */
export const INPUT_DATA_PLACEHOLDER = '${{inputs.input_data}}';

/**
 * How long to wait, after a worker process exits, for the rest of its responses to arrive. The pipe normally
 * closes with the process, but a child that the entry script forked without exec keeps a copy of it open.
 */
const RESPONSE_DRAIN_MS = 200;

/** Bytes of a worker's log shown when it dies during init() without reporting an error itself. */
const LOG_TAIL_BYTES = 4096;

export type WorkerState = 'starting' | 'idle' | 'busy' | 'stopping' | 'exited';

/** Exit details of a worker process. */
export interface WorkerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The state the worker was in when the process ended. */
  stateAtExit: WorkerState;
  /** True when the driver stopped or killed the process itself. */
  requested: boolean;
  /** The mini-batch that the process was running when it ended, if any. */
  batch?: MiniBatch;
  /** Set when the interpreter could not be started at all. */
  spawnError?: Error;
}

export type WorkerEvent =
  | { type: 'ready' }
  | { type: 'result'; batch: MiniBatch; rows: string[] | undefined; count: number }
  | { type: 'error'; batch: MiniBatch; failure: MiniBatchFailure }
  | { type: 'timeout'; batch: MiniBatch; timeoutSeconds: number }
  | { type: 'init_error'; failure: MiniBatchFailure }
  | { type: 'exit'; exit: WorkerExit };

export interface PythonWorkerOptions {
  /** The number n of the worker's log file, logs/worker-<n>.log; unique within the job. */
  number: number;
  spec: LocalJobSpec;
  shimPath: string;
  logFile: string;
  outputsFolder: string;
  onEvent: (worker: PythonWorker, event: WorkerEvent) => void;
}

/** Shape of the messages that prs_worker.py writes to file descriptor 3. */
interface WorkerMessage {
  type?: unknown;
  id?: unknown;
  rows?: unknown;
  count?: unknown;
  message?: unknown;
  error_type?: unknown;
  traceback?: unknown;
}

/**
 * One Python worker process running prs_worker.py. Requests go to its stdin and responses come back on file
 * descriptor 3, one JSON object per line. The process leads its own process group, so killing the group also ends
 * the programs that the entry script started.
 */
export class PythonWorker {
  readonly number: number;
  readonly logFile: string;
  state: WorkerState = 'starting';
  /** The mini-batch that the process is running, while `state` is `busy`. */
  currentBatch: MiniBatch | undefined;

  private readonly options: PythonWorkerOptions;
  private child: ChildProcess | undefined;
  private requests: Writable | undefined;
  private responseText = '';
  private responsesEnded = false;
  private runTimer: NodeJS.Timeout | undefined;
  private exitInfo: Pick<WorkerExit, 'code' | 'signal' | 'spawnError'> | undefined;
  private exitReported = false;
  private stopRequested = false;
  private readonly exitWaiters: (() => void)[] = [];

  constructor(options: PythonWorkerOptions) {
    this.options = options;
    this.number = options.number;
    this.logFile = options.logFile;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the process; it reports `ready` once init() has returned. */
  start(): void {
    const { spec } = this.options;
    const programArguments = spec.programArguments.map((argument) => argument.split(INPUT_DATA_PLACEHOLDER).join(spec.inputRoot));
    const logFd = openSync(this.logFile, 'a');
    try {
      this.child = spawn(
        spec.pythonExecutable,
        ['-u', this.options.shimPath, '--entry-script', spec.entryScript, '--output-action', spec.outputAction, '--', ...programArguments],
        {
          cwd: spec.codeDirectory,
          // The driver's environment without credentials and worker settings, plus the job's own variables.
          env: { ...runnerChildEnvironment(process.env), ...spec.environment, AZUREML_BI_OUTPUT_PATH: this.options.outputsFolder },
          stdio: ['pipe', logFd, logFd, 'pipe'],
          detached: true,
        },
      );
    } finally {
      closeSync(logFd);
    }

    const child = this.child;
    this.requests = child.stdin ?? undefined;
    // A request written after the process died fails with EPIPE; the exit event reports the death.
    this.requests?.on('error', () => undefined);
    const responses = child.stdio[3] as Readable | null;
    if (responses === null) throw new Error('worker response pipe on file descriptor 3 was not created');
    responses.setEncoding('utf8');
    responses.on('data', (text: string) => this.receive(text));
    responses.on('error', () => undefined);
    responses.on('end', () => {
      this.responsesEnded = true;
      if (this.exitInfo !== undefined) this.reportExit();
    });

    child.on('error', (error) => {
      // spawn failed (for example ENOENT): no process exists, so no exit event follows.
      this.exitInfo = { code: null, signal: null, spawnError: error };
      this.reportExit();
    });
    child.on('exit', (code, signal) => {
      // Programs that the entry script started may outlive the worker in its process group. The group is killed
      // at once, because the group id may be reused by another process once no member of the group is left.
      this.killGroup();
      this.exitInfo = { code, signal };
      if (this.responsesEnded) this.reportExit();
      else setTimeout(() => this.reportExit(), RESPONSE_DRAIN_MS);
    });
  }

  /** Sends a mini-batch to run; the process is killed if run() does not return within `runInvocationTimeout`. */
  run(batch: MiniBatch): void {
    if (this.state !== 'idle') throw new Error(`worker ${this.number} cannot run mini-batch ${batch.index} while ${this.state}`);
    this.state = 'busy';
    this.currentBatch = batch;
    const timeoutSeconds = this.options.spec.runInvocationTimeout;
    this.runTimer = setTimeout(() => this.timeOut(batch, timeoutSeconds), timeoutSeconds * 1000);
    this.requests?.write(`${JSON.stringify({ id: batch.index, items: batch.items })}\n`);
  }

  /**
   * Closes stdin so the worker calls shutdown() and exits, waits up to `graceMs` for that, then kills the
   * process group, which also ends anything the entry script left running.
   */
  async stop(graceMs: number): Promise<void> {
    if (this.exitReported) return;
    this.stopRequested = true;
    this.state = 'stopping';
    this.requests?.end();
    const exited = new Promise<void>((resolve) => this.exitWaiters.push(resolve));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, graceMs);
    });
    await Promise.race([exited, timedOut]);
    clearTimeout(timer);
    if (this.exitInfo === undefined) this.killGroup();
    await exited;
  }

  /** Kills the process group at once and resolves when the process has exited. */
  async kill(): Promise<void> {
    if (this.exitReported) return;
    this.stopRequested = true;
    this.state = 'stopping';
    const exited = new Promise<void>((resolve) => this.exitWaiters.push(resolve));
    if (this.exitInfo === undefined) this.killGroup();
    await exited;
  }

  /** Returns the end of the worker's log, where Python prints a traceback that it could not send. */
  readLogTail(): string {
    const fd = openSync(this.logFile, 'r');
    try {
      const size = fstatSync(fd).size;
      const length = Math.min(size, LOG_TAIL_BYTES);
      const buffer = Buffer.alloc(length);
      readSync(fd, buffer, 0, length, size - length);
      return buffer.toString('utf8');
    } finally {
      closeSync(fd);
    }
  }

  private killGroup(): void {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // ESRCH: the group has no processes left.
    }
  }

  private timeOut(batch: MiniBatch, timeoutSeconds: number): void {
    if (this.state !== 'busy' || this.currentBatch !== batch) return;
    this.stopRequested = true;
    this.state = 'stopping';
    this.currentBatch = undefined;
    this.killGroup();
    this.options.onEvent(this, { type: 'timeout', batch, timeoutSeconds });
  }

  private receive(text: string): void {
    this.responseText += text;
    let newline = this.responseText.indexOf('\n');
    while (newline !== -1) {
      const line = this.responseText.slice(0, newline);
      this.responseText = this.responseText.slice(newline + 1);
      if (line.trim() !== '') this.handleMessage(line);
      newline = this.responseText.indexOf('\n');
    }
  }

  private handleMessage(line: string): void {
    let message: WorkerMessage;
    try {
      message = JSON.parse(line) as WorkerMessage;
    } catch {
      this.protocolError(`worker sent a response that is not JSON: ${line.slice(0, 200)}`);
      return;
    }

    if (message.type === 'ready' && this.state === 'starting') {
      this.state = 'idle';
      this.options.onEvent(this, { type: 'ready' });
      return;
    }
    if (message.type === 'init_error' && this.state === 'starting') {
      this.state = 'stopping';
      this.stopRequested = true;
      this.options.onEvent(this, { type: 'init_error', failure: toFailure(message) });
      return;
    }

    const batch = this.currentBatch;
    if (this.state !== 'busy' || batch === undefined || message.id !== batch.index) {
      // A response after a timeout kill is stale and ignored; anything else means the protocol broke.
      if (this.state !== 'stopping' && this.state !== 'exited') {
        this.protocolError(`worker sent an unexpected ${String(message.type)} response for request ${String(message.id)}`);
      }
      return;
    }

    if (message.type === 'result') {
      const rows = Array.isArray(message.rows) && message.rows.every((row) => typeof row === 'string') ? (message.rows) : undefined;
      const count = rows?.length ?? message.count;
      if (typeof count !== 'number') {
        this.protocolError('worker sent a result without rows or count');
        return;
      }
      this.finishRun();
      this.options.onEvent(this, { type: 'result', batch, rows, count });
      return;
    }
    if (message.type === 'error') {
      this.finishRun();
      this.options.onEvent(this, { type: 'error', batch, failure: toFailure(message) });
      return;
    }
    this.protocolError(`worker sent a response of unknown type ${String(message.type)}`);
  }

  private finishRun(): void {
    clearTimeout(this.runTimer);
    this.state = 'idle';
    this.currentBatch = undefined;
  }

  /** Kills a worker whose messages break the protocol, because the process can no longer be trusted. */
  private protocolError(message: string): void {
    const batch = this.currentBatch;
    clearTimeout(this.runTimer);
    this.stopRequested = true;
    this.state = 'stopping';
    this.currentBatch = undefined;
    this.killGroup();
    if (batch !== undefined) this.options.onEvent(this, { type: 'error', batch, failure: { message, errorType: 'ProtocolError' } });
    else this.options.onEvent(this, { type: 'init_error', failure: { message, errorType: 'ProtocolError' } });
  }

  private reportExit(): void {
    if (this.exitReported || this.exitInfo === undefined) return;
    this.exitReported = true;
    clearTimeout(this.runTimer);
    const stateAtExit = this.state;
    const batch = this.currentBatch;
    this.state = 'exited';
    this.currentBatch = undefined;
    this.options.onEvent(this, { type: 'exit', exit: { ...this.exitInfo, stateAtExit, requested: this.stopRequested, batch } });
    for (const resolve of this.exitWaiters.splice(0)) resolve();
  }
}

function toFailure(message: WorkerMessage): MiniBatchFailure {
  return {
    message: typeof message.message === 'string' ? message.message : 'the worker reported an error without a message',
    errorType: typeof message.error_type === 'string' ? message.error_type : undefined,
    traceback: typeof message.traceback === 'string' ? message.traceback : undefined,
  };
}
