/**
 * The contract between the local backend's stage activities and the local parallel runner.
 *
 * A local job lives in one job folder:
 *   job.json        the LocalJobSpec below, written once by `startLocalJob`
 *   status.json     the latest LocalJobStatus, rewritten atomically by the job driver while it runs
 *   journal.jsonl   one line per finished mini-batch, so a restarted driver skips finished work
 *   outputs/        the append_row file (`appendRowFileName`)
 *   logs/           the driver's log and one log per Python worker process
 */

/** Output action of a parallel job, as in an Azure ML parallel run step. */
export type OutputAction = 'append_row' | 'summary_only';

/** Settings of a local job: what it runs and its parallel-run settings. */
export interface LocalJobSpec {
  /** Job name, unique within the local workspace; also the job folder's name. */
  jobName: string;
  /** Absolute path of the dataset manifest: JSON Lines, one `{"path": "<relative path>", "size": <bytes>}` per file. */
  manifestPath: string;
  /** Absolute folder that the manifest's relative paths are resolved against. */
  inputRoot: string;
  /** Absolute folder that contains the entry script and its modules. */
  codeDirectory: string;
  /** Entry script path relative to `codeDirectory`; it defines `init()`, `run(mini_batch)` and optionally `shutdown()`. */
  entryScript: string;
  /**
   * Arguments passed to the entry script in `sys.argv`. The placeholder `${{inputs.input_data}}` is replaced by
   * `inputRoot`, as Azure ML binds a parallel job's input in `program_arguments`.
   */
  programArguments: string[];
  /** Number of files per `run()` call. */
  miniBatchSize: number;
  /** Number of Python worker processes. */
  processCount: number;
  /** Seconds one `run()` call may take before its process is killed and replaced. */
  runInvocationTimeout: number;
  /** How many times a failed mini-batch is run again. */
  maxRetries: number;
  /** Failed items above which the job fails; -1 ignores item failures. */
  errorThreshold: number;
  /** Failed mini-batches above which the job fails; -1 ignores mini-batch failures. */
  miniBatchErrorThreshold: number;
  outputAction: OutputAction;
  /** File name of the append_row output inside `outputs/`. */
  appendRowFileName: string;
  /** Python interpreter that runs the worker processes. */
  pythonExecutable: string;
  /** Extra environment variables for the worker processes. Never secret values: secrets are read by the script. */
  environment: Record<string, string>;
  /** Fault injection for tests. Jobs outside tests leave it unset. */
  faults?: LocalJobFaults;
}

/**
 * Faults that a test can make the runner reproduce. Each one imitates a behaviour of Azure ML's parallel runtime
 * that a healthy local run never shows, so that code reading a job's output can be tested against it.
 */
export interface LocalJobFaults {
  /**
   * 0-based indexes of mini-batches that run a second time after their first success. The rows of both runs are
   * appended, so each item of these mini-batches has two rows. Azure ML's parallel runtime delivers mini-batches
   * at least once: a mini-batch run again after a timeout can append its rows twice. Progress counts such a
   * mini-batch and its items once. The journal records the second run, so a restarted driver runs it only when
   * it had not finished, and the output then still has exactly two copies of the rows.
   */
  repeatMiniBatches?: number[];
}

/** Job lifecycle states; the names match Azure ML's `JobStatus` values. */
export type LocalJobState = 'Queued' | 'Running' | 'Completed' | 'Failed' | 'Canceled';

export interface LocalJobProgress {
  miniBatchesTotal: number;
  miniBatchesSucceeded: number;
  miniBatchesFailed: number;
  itemsTotal: number;
  itemsSucceeded: number;
  itemsFailed: number;
}

export interface LocalJobStatus {
  jobName: string;
  state: LocalJobState;
  progress: LocalJobProgress;
  /** Set when `state` is `Failed`: why, with the entry script's traceback when the script raised. */
  error?: { message: string; traceback?: string };
  /** ISO 8601 times. */
  startedAt?: string;
  endedAt?: string;
  /** Last time the driver wrote this status; a stale value with a dead driver means the driver crashed. */
  updatedAt: string;
  driverPid?: number;
}
