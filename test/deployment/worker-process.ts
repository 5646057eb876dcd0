import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import path from 'node:path';
import { compiledModulePath, projectRoot } from '../../common/project-paths';

/** Seconds a worker process may take to bundle its workflows and connect on a loaded two-core machine. */
const WORKER_START_TIMEOUT_MS = 90_000;

/** One line of the worker's JSON log (see worker/logger.ts). */
export type WorkerLogEntry = { message: string; level: string } & Record<string, unknown>;

/** `node dist/worker/main.js` started by a test, with its stderr parsed as it arrives. */
export interface WorkerProcess {
  child: ChildProcess;
  /** Everything the process wrote so far, stdout and stderr together. */
  output(): string;
  /** Resolves with the first log entry whose message is `message`; rejects when the process exits first. */
  waitForLog(message: string, timeoutMs?: number): Promise<WorkerLogEntry>;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
  /** Sends SIGTERM (a graceful shutdown) and resolves with the exit code; SIGKILL after 30 s. */
  stop(): Promise<number | null>;
}

/**
 * Starts the compiled worker as users run it (`npm run worker`), in the project root, with the test's environment
 * plus `environment`. Its output is also written to `test-results/<logName>.log` for failures.
 */
export function startWorkerProcess(environment: Record<string, string>, logName: string): WorkerProcess {
  const logDir = path.join(projectRoot(), 'test-results');
  mkdirSync(logDir, { recursive: true });
  const logFile = createWriteStream(path.join(logDir, `${logName}.log`));
  const child = spawn(process.execPath, [compiledModulePath('worker/main')], {
    cwd: projectRoot(),
    env: { ...process.env, ...environment },
    stdio: ['ignore', 'pipe', 'pipe'],
  });

  let text = '';
  const entries: WorkerLogEntry[] = [];
  const listeners = new Set<() => void>();
  let pending = '';
  const onData = (chunk: Buffer): void => {
    const piece = chunk.toString('utf8');
    text += piece;
    logFile.write(piece);
    pending += piece;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      try {
        entries.push(JSON.parse(line) as WorkerLogEntry);
      } catch {
        // A line that only looks like JSON is kept in output() but is no log entry.
      }
    }
    for (const listener of listeners) listener();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);

  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      logFile.end();
      for (const listener of listeners) listener();
      resolve(code);
    });
  });

  const waitForLog = (message: string, timeoutMs = WORKER_START_TIMEOUT_MS): Promise<WorkerLogEntry> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const entry = entries.find((candidate) => candidate.message === message);
        if (entry) {
          finish();
          resolve(entry);
        } else if (child.exitCode !== null || child.signalCode !== null) {
          finish();
          reject(new Error(`the worker exited (code ${child.exitCode}) before logging "${message}"; its output:\n${text}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`the worker did not log "${message}" within ${timeoutMs / 1000} s; its output:\n${text}`));
      }, timeoutMs);
      const finish = (): void => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      listeners.add(check);
      check();
    });

  const stop = async (): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    }
    return exited;
  };

  return { child, output: () => text, waitForLog, exited, stop };
}
