/**
 * The local parallel runner's API for the local backend's stage activities: start, observe and cancel a local
 * job. The job itself runs in a detached job driver process (job-driver.ts), so it continues when the calling
 * activity or worker dies, and a later `startLocalJob` on the same folder resumes it.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { compiledModulePath } from '../../../../common/project-paths';
import { runnerChildEnvironment } from './child-environment';
import {
  createFileOnce,
  errorCode,
  isTerminalState,
  jobPaths,
  liveDriverPid,
  outputFilePath,
  readStatusFile,
  writeFileAtomically,
} from './job-files';
import type { JobPaths } from './job-files';
import type { LocalJobSpec, LocalJobStatus } from './job-spec';
import { differingSpecFields, validateLocalJobSpec } from './validate-spec';

const DRIVER_MODULE = 'activities/backends/local/runner/job-driver';
const CANCEL_WAIT_MS = 30_000;
const CANCEL_POLL_MS = 100;

/**
 * Creates the job in `jobFolder` if needed and makes sure a job driver runs it. Safe to call again at any time:
 * it writes job.json only once, does nothing for a job in a terminal state or with a live driver, and otherwise
 * starts a driver, which resumes from the journal. Throws when job.json exists with a different spec.
 *
 * Returns `resumed: true` when the job already existed, so this call continued it instead of creating it.
 */
export async function startLocalJob(jobFolder: string, spec: LocalJobSpec): Promise<{ resumed: boolean }> {
  validateLocalJobSpec(spec, `the spec passed to startLocalJob for ${jobFolder}`);
  const paths = jobPaths(jobFolder);
  if (path.basename(paths.folder) !== spec.jobName) {
    throw new Error(
      `job folder ${paths.folder} does not match jobName ${spec.jobName}; the job folder's name must be the job name`,
    );
  }
  await mkdir(paths.logs, { recursive: true });
  await mkdir(paths.outputs, { recursive: true });

  const created = createFileOnce(paths.spec, `${JSON.stringify(spec, null, 2)}\n`);
  if (!created) {
    const stored = validateLocalJobSpec(JSON.parse(await readFile(paths.spec, 'utf8')), paths.spec);
    const differences = differingSpecFields(stored, spec);
    if (differences.length > 0) {
      throw new Error(
        `local job ${spec.jobName} already exists in ${paths.folder} with a different spec: ${differences.join(', ')} ` +
          'differ; pass the original spec to resume it, or use a new job name',
      );
    }
  }

  const status = readStatusFile(paths);
  if (status === undefined) {
    createFileOnce(paths.status, `${JSON.stringify(queuedStatus(spec.jobName), null, 2)}\n`);
  } else if (isTerminalState(status.state)) {
    return { resumed: !created };
  }
  if (liveDriverPid(paths) !== undefined) return { resumed: !created };

  await spawnDriver(paths);
  return { resumed: !created };
}

/**
 * Starts a detached job driver whose stdout and stderr go to logs/driver.stdout.log. The driver reads no
 * environment variable itself, and it gets none of the worker's credentials or settings, because its Python
 * processes inherit its environment.
 */
async function spawnDriver(paths: JobPaths): Promise<void> {
  const driverScript = compiledModulePath(DRIVER_MODULE);
  const outputFd = openSync(paths.driverStdout, 'a');
  try {
    const driver = spawn(process.execPath, [driverScript, paths.folder], {
      cwd: paths.folder,
      env: runnerChildEnvironment(process.env),
      detached: true,
      stdio: ['ignore', outputFd, outputFd],
    });
    await once(driver, 'spawn');
    driver.unref();
  } finally {
    closeSync(outputFd);
  }
}

/**
 * Reads the job's latest status. Before the first driver has written one, the job is Queued with empty progress.
 * Throws "local job not found" when the folder or its job.json does not exist.
 */
export async function readLocalJobStatus(jobFolder: string): Promise<LocalJobStatus> {
  const paths = jobPaths(jobFolder);
  const spec = await requireJob(paths);
  const status = readStatusFile(paths);
  if (status !== undefined) return status;

  const specWritten = (await stat(paths.spec)).mtime.toISOString();
  return { ...queuedStatus(spec.jobName), updatedAt: specWritten };
}

/** Returns whether a job driver process is running the job; false means a crashed or finished driver. */
export async function isLocalJobDriverAlive(jobFolder: string): Promise<boolean> {
  return (await localJobDriverPid(jobFolder)) !== undefined;
}

/** Returns the pid of the job driver running the job, or undefined when none runs. */
export async function localJobDriverPid(jobFolder: string): Promise<number | undefined> {
  const paths = jobPaths(jobFolder);
  await requireJob(paths);
  return liveDriverPid(paths);
}

/**
 * Cancels the job: writes the cancel-requested file and sends SIGTERM to the driver, which kills the Python
 * processes and writes Canceled. Without a live driver the Canceled status is written here. Resolves once the
 * state is terminal or after `timeoutMs`, whichever comes first; a job already in a terminal state is left as it is.
 */
export async function cancelLocalJob(jobFolder: string, options: { timeoutMs?: number } = {}): Promise<void> {
  const paths = jobPaths(jobFolder);
  await requireJob(paths);
  if (isTerminal(readStatusFile(paths))) return;

  await writeFile(paths.cancelRequest, `${new Date().toISOString()}\n`);
  const pid = liveDriverPid(paths);
  if (pid !== undefined) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch (error) {
      if (errorCode(error) !== 'ESRCH') throw error;
    }
  } else {
    writeCanceledStatus(paths);
  }

  const deadline = Date.now() + (options.timeoutMs ?? CANCEL_WAIT_MS);
  while (Date.now() < deadline) {
    if (isTerminal(readStatusFile(paths))) return;
    // A driver that was starting when the file was written finds it on its next check and stops itself.
    if (liveDriverPid(paths) === undefined) writeCanceledStatus(paths);
    await new Promise((resolve) => setTimeout(resolve, CANCEL_POLL_MS));
  }
}

/** Returns the path of the append_row output file, or undefined for summary_only, which writes no output file. */
export function localJobOutputPath(jobFolder: string, spec: LocalJobSpec): string | undefined {
  return outputFilePath(jobFolder, spec);
}

function isTerminal(status: LocalJobStatus | undefined): boolean {
  return status !== undefined && isTerminalState(status.state);
}

/** Writes Canceled, keeping the progress of the last status, unless the job already reached a terminal state. */
function writeCanceledStatus(paths: JobPaths): void {
  const previous = readStatusFile(paths);
  if (isTerminal(previous)) return;
  const now = new Date().toISOString();
  const status: LocalJobStatus = {
    ...(previous ?? queuedStatus(path.basename(paths.folder))),
    state: 'Canceled',
    endedAt: now,
    updatedAt: now,
  };
  writeFileAtomically(paths.status, `${JSON.stringify(status, null, 2)}\n`);
}

function queuedStatus(jobName: string): LocalJobStatus {
  return {
    jobName,
    state: 'Queued',
    progress: { miniBatchesTotal: 0, miniBatchesSucceeded: 0, miniBatchesFailed: 0, itemsTotal: 0, itemsSucceeded: 0, itemsFailed: 0 },
    updatedAt: new Date().toISOString(),
  };
}

/** Reads and returns the job's spec, or throws "local job not found" naming the folder. */
async function requireJob(paths: JobPaths): Promise<LocalJobSpec> {
  let text: string;
  try {
    text = await readFile(paths.spec, 'utf8');
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') throw error;
    const folderExists = await stat(paths.folder).then(
      () => true,
      () => false,
    );
    throw new Error(
      folderExists
        ? `local job not found: job folder ${paths.folder} has no job.json; start the job with startLocalJob`
        : `local job not found: job folder ${paths.folder} does not exist; check the job name or start the job with startLocalJob`,
      { cause: error },
    );
  }
  return validateLocalJobSpec(JSON.parse(text), paths.spec);
}
