/**
 * Command-line flags that the Azure ML parallel runtime reads from the entry script's `sys.argv`. The runtime and
 * the entry script share one argument list, so a program argument with one of these names is read by both.
 *
 * Sources, as opened:
 * - Azure ML docs, "How to use parallel job in pipeline" and the parallel job YAML reference: the flags that users
 *   set in `program_arguments` (`--error_threshold`, `--allowed_failed_percent`, `--task_overhead_timeout`,
 *   `--progress_update_timeout`, `--first_task_creation_timeout`, `--copy_logs_to_parent`,
 *   `--metrics_name_prefix`, `--push_metrics_to_parent`, `--resource_monitor_interval`).
 * - azureml-pipeline-steps (SDK v1), `ParallelRunStep._generate_main_file_args`: the flags the step itself puts on
 *   the command line (`--client_sdk_version`, `--scoring_module_name`, `--input_format`, `--mini_batch_size`,
 *   `--error_threshold`, `--output_action`, `--logging_level`, `--run_invocation_timeout`, `--run_max_try`,
 *   `--create_snapshot_at_runtime`, `--allowed_failed_count`, `--allowed_failed_percent`, `--append_row_file_name`,
 *   `--output`, `--process_count_per_node`, and `--input<n>`, `--input_ds_<n>`, `--input_fds_<n>`,
 *   `--input_pipeline_param_<n>`).
 * - A public copy of the runtime's driver argument parser (`arg_parser.py`, repository not named): it also reads
 *   `--inputs`, `--nice`, `--run_id`, `--run_context_type`, `--profiling_module`, `--cleanup_leaked_queues` and
 *   `--score_run_timeout` (another name for `--run_invocation_timeout`). It matches the `--input<n>` families
 *   case-insensitively, also in the `--flag=value` form, and parses with `allow_abbrev=False`.
 * `--partition_keys` is not among them: it is a component field (`partition_keys`), and Azure's own many-models
 * examples pass `--partition_keys` to their entry scripts as an ordinary argument.
 * NOTE: which of these flags the v2 runtime still passes itself is not documented; the list takes the union.
 */

/** Relation of a runtime flag to amlbatch. */
export type RuntimeFlagUse =
  /** The runtime sets it from the job definition; a program argument with this name corrupts the job. */
  | 'set_by_runtime'
  /** The runtime reads it, and amlbatch sets the same thing from a workflow input field. */
  | 'amlbatch_setting'
  /** A tuning flag that Azure ML documents for program_arguments; the local runner ignores it. */
  | 'tuning';

export interface RuntimeFlag {
  flag: string;
  use: RuntimeFlagUse;
  /** The workflow input field to set instead, for `amlbatch_setting`. */
  inputField?: string;
}

export const RUNTIME_FLAGS: readonly RuntimeFlag[] = [
  { flag: '--mini_batch_size', use: 'amlbatch_setting', inputField: 'miniBatchSize' },
  { flag: '--error_threshold', use: 'amlbatch_setting', inputField: 'errorThreshold' },
  { flag: '--allowed_failed_count', use: 'amlbatch_setting', inputField: 'miniBatchErrorThreshold' },
  { flag: '--run_invocation_timeout', use: 'amlbatch_setting', inputField: 'runInvocationTimeout' },
  { flag: '--score_run_timeout', use: 'amlbatch_setting', inputField: 'runInvocationTimeout' },
  { flag: '--run_max_try', use: 'amlbatch_setting', inputField: 'maxRetries' },
  { flag: '--process_count_per_node', use: 'amlbatch_setting', inputField: 'processCount' },
  { flag: '--output_action', use: 'amlbatch_setting', inputField: 'outputAction' },
  { flag: '--append_row_file_name', use: 'amlbatch_setting', inputField: 'appendRowFileName' },
  { flag: '--scoring_module_name', use: 'set_by_runtime' },
  { flag: '--client_sdk_version', use: 'set_by_runtime' },
  { flag: '--input_format', use: 'set_by_runtime' },
  { flag: '--logging_level', use: 'set_by_runtime' },
  { flag: '--create_snapshot_at_runtime', use: 'set_by_runtime' },
  { flag: '--output', use: 'set_by_runtime' },
  { flag: '--inputs', use: 'set_by_runtime' },
  { flag: '--run_id', use: 'set_by_runtime' },
  { flag: '--run_context_type', use: 'set_by_runtime' },
  { flag: '--allowed_failed_percent', use: 'tuning' },
  { flag: '--task_overhead_timeout', use: 'tuning' },
  { flag: '--progress_update_timeout', use: 'tuning' },
  { flag: '--first_task_creation_timeout', use: 'tuning' },
  { flag: '--copy_logs_to_parent', use: 'tuning' },
  { flag: '--metrics_name_prefix', use: 'tuning' },
  { flag: '--push_metrics_to_parent', use: 'tuning' },
  { flag: '--resource_monitor_interval', use: 'tuning' },
  { flag: '--profiling_module', use: 'tuning' },
  { flag: '--nice', use: 'tuning' },
  { flag: '--cleanup_leaked_queues', use: 'tuning' },
];

/** The runtime's numbered input flags, such as `--input0` or `--input_ds_1`, matched case-insensitively like the driver. */
const NUMBERED_INPUT_FLAG = /^--(?:input|input_ds_|input_fds_|input_pipeline_param_)\d+$/i;

const FLAGS_BY_NAME = new Map(RUNTIME_FLAGS.map((flag) => [flag.flag, flag]));

/** Returns the runtime flag that `name` (a `--flag` without `=value`) is, or undefined. */
export function runtimeFlagNamed(name: string): RuntimeFlag | undefined {
  const flag = FLAGS_BY_NAME.get(name);
  if (flag !== undefined) return flag;
  if (NUMBERED_INPUT_FLAG.test(name)) return { flag: name, use: 'set_by_runtime' };
  return undefined;
}

/**
 * Returns a flag that the runtime passes and that is a proper prefix of `name`, such as `--output` for
 * `--output_dir`. An entry script whose argparse parser keeps the default `allow_abbrev=True` reads the runtime's
 * flag as an abbreviation of its own.
 */
export function runtimeFlagAbbreviating(name: string): RuntimeFlag | undefined {
  for (const flag of RUNTIME_FLAGS) {
    if (flag.use !== 'tuning' && name.length > flag.flag.length && name.startsWith(flag.flag)) return flag;
  }
  return undefined;
}
