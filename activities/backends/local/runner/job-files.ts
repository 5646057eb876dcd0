import { closeSync, fsyncSync, linkSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { LocalJobSpec, LocalJobState, LocalJobStatus } from './job-spec';

/** Paths of the files in one job folder; `job-spec.ts` describes the layout. */
export interface JobPaths {
  folder: string;
  spec: string;
  status: string;
  journal: string;
  outputs: string;
  logs: string;
  driverLog: string;
  driverStdout: string;
  /** Contains the pid of the driver that owns the job; see `acquireDriverLock`. */
  lock: string;
  /** Marker file whose presence requests cancellation of the job. */
  cancelRequest: string;
}

export function jobPaths(jobFolder: string): JobPaths {
  const folder = path.resolve(jobFolder);
  return {
    folder,
    spec: path.join(folder, 'job.json'),
    status: path.join(folder, 'status.json'),
    journal: path.join(folder, 'journal.jsonl'),
    outputs: path.join(folder, 'outputs'),
    logs: path.join(folder, 'logs'),
    driverLog: path.join(folder, 'logs', 'driver.log'),
    driverStdout: path.join(folder, 'logs', 'driver.stdout.log'),
    lock: path.join(folder, 'driver.lock'),
    cancelRequest: path.join(folder, 'cancel-requested'),
  };
}

/** Path of the append_row output file, or undefined for summary_only, which writes no output file. */
export function outputFilePath(jobFolder: string, spec: LocalJobSpec): string | undefined {
  if (spec.outputAction === 'summary_only') return undefined;
  return path.join(jobPaths(jobFolder).outputs, spec.appendRowFileName);
}

const TERMINAL_STATES: ReadonlySet<LocalJobState> = new Set<LocalJobState>(['Completed', 'Failed', 'Canceled']);
const ALL_STATES: ReadonlySet<string> = new Set<LocalJobState>(['Queued', 'Running', 'Completed', 'Failed', 'Canceled']);

export function isTerminalState(state: LocalJobState): boolean {
  return TERMINAL_STATES.has(state);
}

/** Replaces `file` with `text` atomically: readers see the old or the new content, never a partial write. */
export function writeFileAtomically(file: string, text: string): void {
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, text);
  renameSync(temporary, file);
}

/**
 * Creates `file` with `text` unless it exists. Returns false when it already existed. The content appears
 * complete or not at all, because it is written to a temporary file first and then hard-linked into place.
 */
export function createFileOnce(file: string, text: string): boolean {
  const temporary = `${file}.${process.pid}.${Date.now()}.tmp`;
  writeFileSync(temporary, text);
  try {
    linkSync(temporary, file);
    return true;
  } catch (error) {
    if (errorCode(error) === 'EEXIST') return false;
    throw error;
  } finally {
    unlinkSync(temporary);
  }
}

/** Reads status.json, or returns undefined when the driver has not written it yet. */
export function readStatusFile(paths: JobPaths): LocalJobStatus | undefined {
  let text: string;
  try {
    text = readFileSync(paths.status, 'utf8');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw error;
  }

  const status = JSON.parse(text) as LocalJobStatus;
  if (typeof status !== 'object' || status === null || !ALL_STATES.has(status.state) || typeof status.progress !== 'object') {
    throw new Error(`status file ${paths.status} is invalid: expected a LocalJobStatus object with a known state`);
  }
  return status;
}

export function errorCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string') return error.code;
  return undefined;
}

/**
 * Returns whether `pid` is a running job driver. A pid of a process that has exited can be reused by an unrelated
 * program, so on Linux the process's command line must also name the driver module. On systems without
 * `/proc` only the existence of the pid is checked.
 */
export function isDriverProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if (errorCode(error) !== 'EPERM') return false;
  }

  let commandLine: string;
  try {
    commandLine = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch (error) {
    const code = errorCode(error);
    return !(code === 'ENOENT' || code === 'ESRCH');
  }
  // A zombie process has an empty command line.
  return commandLine.includes('job-driver');
}

/** Returns the pid written in the driver lock, or undefined when there is no lock or it holds no valid pid. */
export function readLockPid(paths: JobPaths): number | undefined {
  let text: string;
  try {
    text = readFileSync(paths.lock, 'utf8');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw error;
  }
  const pid = Number.parseInt(text.trim(), 10);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

/** Returns the pid of the driver that holds the job's lock and still runs, or undefined. */
export function liveDriverPid(paths: JobPaths): number | undefined {
  const pid = readLockPid(paths);
  return pid !== undefined && isDriverProcessAlive(pid) ? pid : undefined;
}

export type LockResult = { acquired: true } | { acquired: false; holderPid: number };

const LOCK_ATTEMPTS = 5;

/**
 * Takes the job's driver lock for this process. A lock whose pid is no longer a running driver is stale and is
 * taken over: the stale file is renamed away, which only one contender can do, and the lock is created again
 * with O_EXCL. Returns the holder's pid when a live driver owns the lock.
 */
export async function acquireDriverLock(paths: JobPaths): Promise<LockResult> {
  for (let attempt = 0; attempt < LOCK_ATTEMPTS; attempt += 1) {
    try {
      const fd = openSync(paths.lock, 'wx');
      try {
        writeSync(fd, `${process.pid}\n`);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      return { acquired: true };
    } catch (error) {
      if (errorCode(error) !== 'EEXIST') throw error;
    }

    const holderPid = readLockPid(paths);
    if (holderPid !== undefined && holderPid !== process.pid && isDriverProcessAlive(holderPid)) {
      return { acquired: false, holderPid };
    }
    if (holderPid === undefined) {
      // The creator opens the lock and writes its pid in two steps; give a lock without a pid a moment to fill.
      await new Promise((resolve) => setTimeout(resolve, 50));
      if (readLockPid(paths) !== undefined) continue;
    }
    removeStaleLock(paths, holderPid);
  }
  throw new Error(`could not take the driver lock ${paths.lock} after ${LOCK_ATTEMPTS} attempts; another driver keeps replacing it`);
}

function removeStaleLock(paths: JobPaths, stalePid: number | undefined): void {
  const moved = `${paths.lock}.stale.${process.pid}`;
  try {
    renameSync(paths.lock, moved);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return;
    throw error;
  }

  // Between reading the stale pid and the rename, another driver may have taken the lock over; give it back.
  const movedPid = Number.parseInt(readFileSync(moved, 'utf8').trim(), 10);
  if (movedPid !== stalePid && Number.isSafeInteger(movedPid) && isDriverProcessAlive(movedPid)) {
    try {
      linkSync(moved, paths.lock);
    } catch (error) {
      if (errorCode(error) !== 'EEXIST') throw error;
    }
  }
  unlinkSync(moved);
}

/** Removes the lock if this process holds it. */
export function releaseDriverLock(paths: JobPaths): void {
  if (readLockPid(paths) === process.pid) unlinkSync(paths.lock);
}
