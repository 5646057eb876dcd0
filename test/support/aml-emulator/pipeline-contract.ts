/**
 * Shape checks for the two parts of the Azure ML API that the OpenAPI spec leaves free-form: a component
 * version's `componentSpec` and the nodes in a PipelineJob's `jobs`. The accepted keys and types are those of the
 * Azure ML SDK v2 serialization of a parallel component and a parallel pipeline node (snake_case YAML keys,
 * except `componentId`, `computeId` and `_source`). The checks return one issue per unknown key or wrong value,
 * which the routes turn into a 400 response.
 *
 * `resolveParallelRun` then merges a node over its component (a node's value wins) into the settings a run uses.
 */

/** One violation, with a JSON-pointer-like path such as `/properties/jobs/score/retry_settings/timeout`. */
export interface ContractIssue {
  path: string;
  message: string;
}

type Check = (value: unknown, at: string, issues: ContractIssue[]) => void;

interface FieldSpec {
  check: Check;
  required?: boolean;
}

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const describe = (value: unknown): string => (value === undefined ? 'missing' : JSON.stringify(value));

/** Checks an object with the given fields. Unknown keys are issues, and null counts as unset for optional fields. */
function object(fields: Record<string, FieldSpec>): Check {
  return (value, at, issues) => {
    if (!isPlainObject(value)) {
      issues.push({ path: at, message: `expected an object, got ${describe(value)}` });
      return;
    }
    for (const key of Object.keys(value)) {
      if (!(key in fields)) issues.push({ path: `${at}/${key}`, message: `unknown key; accepted keys are ${Object.keys(fields).join(', ')}` });
    }
    for (const [key, spec] of Object.entries(fields)) {
      const fieldValue = value[key];
      if (fieldValue === undefined || fieldValue === null) {
        if (spec.required) issues.push({ path: `${at}/${key}`, message: 'required key is missing' });
        continue;
      }
      spec.check(fieldValue, `${at}/${key}`, issues);
    }
  };
}

function mapOf(check: Check): Check {
  return (value, at, issues) => {
    if (!isPlainObject(value)) {
      issues.push({ path: at, message: `expected an object that maps names to values, got ${describe(value)}` });
      return;
    }
    for (const [key, entry] of Object.entries(value)) check(entry, `${at}/${key}`, issues);
  };
}

const string: Check = (value, at, issues) => {
  if (typeof value !== 'string') issues.push({ path: at, message: `expected a string, got ${describe(value)}` });
};

const boolean: Check = (value, at, issues) => {
  if (typeof value !== 'boolean') issues.push({ path: at, message: `expected true or false, got ${describe(value)}` });
};

const anyObject: Check = (value, at, issues) => {
  if (!isPlainObject(value)) issues.push({ path: at, message: `expected an object, got ${describe(value)}` });
};

function integer(min: number, max = Number.MAX_SAFE_INTEGER): Check {
  return (value, at, issues) => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      issues.push({ path: at, message: `expected an integer from ${min} to ${max}, got ${describe(value)}` });
    }
  };
}

function oneOf(values: readonly string[]): Check {
  return (value, at, issues) => {
    if (typeof value !== 'string' || !values.includes(value)) {
      issues.push({ path: at, message: `expected one of ${values.join(', ')}, got ${describe(value)}` });
    }
  };
}

function matching(pattern: RegExp, example: string): Check {
  return (value, at, issues) => {
    if (typeof value !== 'string' || !pattern.test(value)) {
      issues.push({ path: at, message: `expected a string like ${example}, got ${describe(value)}` });
    }
  };
}

function either(...checks: Check[]): Check {
  return (value, at, issues) => {
    const attempts = checks.map((check) => {
      const found: ContractIssue[] = [];
      check(value, at, found);
      return found;
    });
    if (attempts.some((found) => found.length === 0)) return;
    issues.push(...attempts.reduce((fewest, found) => (found.length < fewest.length ? found : fewest)));
  };
}

const stringMap = mapOf(string);

const INPUT_PORT_TYPES = ['uri_folder', 'uri_file', 'mltable', 'custom_model', 'mlflow_model', 'string', 'integer', 'number', 'boolean'];
const OUTPUT_PORT_TYPES = ['uri_folder', 'uri_file', 'mltable', 'custom_model', 'mlflow_model'];
const JOB_INPUT_TYPES = ['uri_file', 'uri_folder', 'mltable', 'custom_model', 'mlflow_model', 'triton_model'];
const INPUT_DELIVERY_MODES = ['ReadOnlyMount', 'ReadWriteMount', 'Download', 'Direct', 'EvalMount', 'EvalDownload'];
const OUTPUT_DELIVERY_MODES = ['ReadWriteMount', 'Upload'];
const LOGGING_LEVELS = ['DEBUG', 'INFO', 'WARNING'];

/** `${{inputs.<name>}}`, the expression that binds a component input. */
export const INPUT_BINDING = /^\$\{\{inputs\.([A-Za-z_][A-Za-z0-9_]*)\}\}$/;
/** `${{outputs.<name>}}`, the expression that binds a component output. */
export const OUTPUT_BINDING = /^\$\{\{outputs\.([A-Za-z_][A-Za-z0-9_]*)\}\}$/;
const PARENT_INPUT_BINDING = /^\$\{\{parent\.inputs\.([A-Za-z_][A-Za-z0-9_]*)\}\}$/;
const PARENT_OUTPUT_BINDING = /^\$\{\{parent\.outputs\.([A-Za-z_][A-Za-z0-9_]*)\}\}$/;
const ANY_BINDING = /\$\{\{\s*([^}]*?)\s*\}\}/g;

const resources = object({
  instance_count: { check: integer(1) },
  instance_type: { check: string },
  properties: { check: anyObject },
  shm_size: { check: string },
  docker_args: { check: string },
});

// The run() timeout range is (0, 259200] seconds in the SDK's schema.
const retrySettings = object({ max_retries: { check: integer(0) }, timeout: { check: integer(1, 259_200) } });

const task = object({
  type: { check: oneOf(['run_function', 'model', 'function']), required: true },
  code: { check: string },
  entry_script: { check: string },
  environment: { check: string, required: true },
  program_arguments: { check: string },
  append_row_to: { check: matching(OUTPUT_BINDING, '${{outputs.scores}}') },
  model: { check: string },
});

/** Parallel settings that a component spec and a pipeline node share; a node's value overrides the component's. */
const PARALLEL_SETTINGS: Record<string, FieldSpec> = {
  resources: { check: resources },
  max_concurrency_per_instance: { check: integer(1) },
  error_threshold: { check: integer(-1) },
  mini_batch_error_threshold: { check: integer(-1) },
  logging_level: { check: oneOf(LOGGING_LEVELS) },
  retry_settings: { check: retrySettings },
  environment_variables: { check: stringMap },
  partition_keys: { check: string },
};

const componentSpecShape = object({
  $schema: { check: string },
  _source: { check: string },
  name: { check: string, required: true },
  version: { check: either(string, integer(0)), required: true },
  display_name: { check: string },
  description: { check: string },
  tags: { check: stringMap },
  is_deterministic: { check: boolean },
  type: { check: oneOf(['parallel']), required: true },
  inputs: {
    check: mapOf(
      object({
        type: { check: oneOf(INPUT_PORT_TYPES), required: true },
        optional: { check: boolean },
        description: { check: string },
        default: { check: either(string, boolean, integer(Number.MIN_SAFE_INTEGER)) },
        mode: { check: oneOf(INPUT_DELIVERY_MODES) },
      }),
    ),
  },
  outputs: {
    check: mapOf(
      object({
        type: { check: oneOf(OUTPUT_PORT_TYPES), required: true },
        description: { check: string },
        mode: { check: oneOf(OUTPUT_DELIVERY_MODES) },
      }),
    ),
  },
  input_data: { check: matching(INPUT_BINDING, '${{inputs.input_data}}'), required: true },
  // The SDK's schema types mini_batch_size as a string: a file count, or a size such as "10kb" for mltable inputs.
  mini_batch_size: { check: matching(/^\d+([kKmMgG][bB])?$/, '"10" or "10kb"') },
  ...PARALLEL_SETTINGS,
  task: { check: task, required: true },
});

/** Checks a parallel component's `componentSpec`, including that its `${{inputs.x}}`/`${{outputs.y}}` name declared ports. */
export function checkComponentSpec(spec: unknown, at = '/properties/componentSpec'): ContractIssue[] {
  const issues: ContractIssue[] = [];
  componentSpecShape(spec, at, issues);
  if (issues.length > 0 || !isPlainObject(spec)) return issues;

  const inputs = Object.keys((spec.inputs ?? {}));
  const outputs = Object.keys((spec.outputs ?? {}));
  const expressions: [string, string][] = [[`${at}/input_data`, String(spec.input_data)]];
  const taskSpec = spec.task as Record<string, unknown>;
  if (typeof taskSpec.program_arguments === 'string') expressions.push([`${at}/task/program_arguments`, taskSpec.program_arguments]);
  if (typeof taskSpec.append_row_to === 'string') expressions.push([`${at}/task/append_row_to`, taskSpec.append_row_to]);
  for (const [path, text] of expressions) {
    for (const match of text.matchAll(ANY_BINDING)) {
      const [scope, name, ...rest] = match[1].split('.');
      let declared: string[] | undefined;
      if (scope === 'inputs') declared = inputs;
      else if (scope === 'outputs') declared = outputs;
      if (declared === undefined || name === undefined || rest.length > 0) {
        issues.push({ path, message: `binding ${match[0]} is invalid; use \${{inputs.<name>}} or \${{outputs.<name>}}` });
      } else if (!declared.includes(name)) {
        issues.push({ path, message: `binding ${match[0]} names no declared ${scope.slice(0, -1)}; declared ${scope}: ${declared.join(', ') || 'none'}` });
      }
    }
  }
  return issues;
}

const nodeInput = either(
  object({ job_input_type: { check: oneOf(['literal']), required: true }, value: { check: string, required: true }, description: { check: string } }),
  object({
    job_input_type: { check: oneOf(JOB_INPUT_TYPES), required: true },
    uri: { check: string, required: true },
    mode: { check: oneOf(INPUT_DELIVERY_MODES) },
    description: { check: string },
  }),
);

const nodeOutput = either(
  object({ type: { check: oneOf(['literal']), required: true }, value: { check: string, required: true } }),
  object({
    job_output_type: { check: oneOf(OUTPUT_PORT_TYPES), required: true },
    uri: { check: string },
    mode: { check: oneOf(OUTPUT_DELIVERY_MODES) },
    description: { check: string },
  }),
);

/** A node may override any task field of its component; none is required there. */
const nodeTask = object({
  type: { check: oneOf(['run_function', 'model', 'function']) },
  code: { check: string },
  entry_script: { check: string },
  environment: { check: string },
  program_arguments: { check: string },
  append_row_to: { check: matching(OUTPUT_BINDING, '${{outputs.scores}}') },
  model: { check: string },
});

const parallelNodeShape = object({
  type: { check: oneOf(['parallel']), required: true },
  name: { check: string },
  display_name: { check: string },
  tags: { check: stringMap },
  comment: { check: string },
  properties: { check: stringMap },
  _source: { check: string },
  componentId: { check: string, required: true },
  computeId: { check: string },
  inputs: { check: mapOf(nodeInput) },
  outputs: { check: mapOf(nodeOutput) },
  input_data: { check: matching(INPUT_BINDING, '${{inputs.input_data}}') },
  mini_batch_size: { check: integer(1) },
  ...PARALLEL_SETTINGS,
  task: { check: nodeTask },
  identity: { check: anyObject },
});

const pipelineSettingsShape = object({
  default_compute: { check: string },
  default_datastore: { check: string },
  continue_on_step_failure: { check: boolean },
  force_rerun: { check: boolean },
  _source: { check: string },
  on_init: { check: string },
  on_finalize: { check: string },
});

/**
 * Checks a PipelineJob's `settings` and `jobs`: every node must be a parallel node of the accepted shape, and its
 * `${{parent.inputs.x}}`/`${{parent.outputs.y}}` bindings must name the pipeline's own inputs and outputs. The
 * emulator runs pipelines of exactly one parallel node, the shape amlbatch submits.
 */
export function checkPipelineJob(properties: Record<string, unknown>): ContractIssue[] {
  const issues: ContractIssue[] = [];
  if (properties.settings !== undefined && properties.settings !== null) pipelineSettingsShape(properties.settings, '/properties/settings', issues);

  const jobs = properties.jobs;
  if (!isPlainObject(jobs) || Object.keys(jobs).length !== 1) {
    issues.push({
      path: '/properties/jobs',
      message: `expected exactly one node, a parallel node; got ${isPlainObject(jobs) ? Object.keys(jobs).length : describe(jobs)} (the emulator runs one-node parallel pipelines)`,
    });
    return issues;
  }

  const parentInputs = Object.keys((properties.inputs ?? {}));
  const parentOutputs = Object.keys((properties.outputs ?? {}));
  for (const [key, node] of Object.entries(jobs)) {
    const at = `/properties/jobs/${key}`;
    parallelNodeShape(node, at, issues);
    if (!isPlainObject(node)) continue;
    if (typeof node.name === 'string' && node.name !== key) {
      issues.push({ path: `${at}/name`, message: `node name ${JSON.stringify(node.name)} differs from its key ${JSON.stringify(key)} in jobs` });
    }
    for (const [port, binding] of Object.entries((node.inputs ?? {}) as Record<string, Record<string, unknown>>)) {
      checkParentBinding(binding, 'job_input_type', PARENT_INPUT_BINDING, parentInputs, 'input', `${at}/inputs/${port}`, issues);
    }
    for (const [port, binding] of Object.entries((node.outputs ?? {}) as Record<string, Record<string, unknown>>)) {
      checkParentBinding(binding, 'type', PARENT_OUTPUT_BINDING, parentOutputs, 'output', `${at}/outputs/${port}`, issues);
    }
  }
  return issues;
}

function checkParentBinding(
  binding: Record<string, unknown>,
  typeKey: string,
  pattern: RegExp,
  declared: string[],
  noun: string,
  at: string,
  issues: ContractIssue[],
): void {
  if (!isPlainObject(binding) || binding[typeKey] !== 'literal' || typeof binding.value !== 'string') return;
  const match = pattern.exec(binding.value);
  if (match === null) {
    issues.push({ path: `${at}/value`, message: `expected a binding \${{parent.${noun}s.<name>}}, got ${JSON.stringify(binding.value)}` });
  } else if (!declared.includes(match[1])) {
    issues.push({ path: `${at}/value`, message: `binding names pipeline ${noun} ${match[1]}, which the job does not declare; declared: ${declared.join(', ') || 'none'}` });
  }
}

/** Effective settings of one parallel node: the node's values over its component's, with the service's defaults. */
export interface ParallelRunSettings {
  /** Component input port that `input_data` binds, split into mini-batches. */
  inputPort: string;
  /** `mini_batch_size` as sent: a file count, or a size with unit for mltable inputs. */
  miniBatchSize: string;
  instanceCount: number;
  maxConcurrencyPerInstance: number;
  errorThreshold: number;
  miniBatchErrorThreshold: number;
  maxRetries: number;
  /** Seconds one run() call may take. */
  timeoutSeconds: number;
  loggingLevel: string;
  environmentVariables: Record<string, string>;
  partitionKeys?: string;
  taskType: string;
  code?: string;
  entryScript?: string;
  environment: string;
  programArguments: string;
  /** Component output port that `append_row_to` binds; undefined for summary_only. */
  appendRowPort?: string;
}

/**
 * Merges a node (already checked by `checkPipelineJob`) over its component spec (checked by `checkComponentSpec`).
 * Defaults when neither sets a value, from the SDK v2 docs: 1 file per mini-batch, 1 instance, 1 process per
 * instance, no error thresholds (-1), 2 retries and a 60 s run() timeout, logging level INFO.
 */
export function resolveParallelRun(componentSpec: Record<string, unknown>, node: Record<string, unknown>): ParallelRunSettings {
  const pick = <T>(key: string, fallback: T): T => (node[key] ?? componentSpec[key] ?? fallback) as T;
  const merged = <T extends object>(key: string): T => ({ ...((componentSpec[key] ?? {}) as T), ...((node[key] ?? {}) as T) });

  const resources = merged<{ instance_count?: number }>('resources');
  const retry = merged<{ max_retries?: number; timeout?: number }>('retry_settings');
  const taskSpec = merged<Record<string, string | undefined>>('task');
  const inputBinding = INPUT_BINDING.exec(pick<string>('input_data', ''));
  const appendRow = taskSpec.append_row_to === undefined ? null : OUTPUT_BINDING.exec(taskSpec.append_row_to);
  const partitionKeys = pick<string | undefined>('partition_keys', undefined);

  return {
    inputPort: inputBinding?.[1] ?? '',
    miniBatchSize: String(pick<string | number>('mini_batch_size', '1')),
    instanceCount: resources.instance_count ?? 1,
    maxConcurrencyPerInstance: pick('max_concurrency_per_instance', 1),
    errorThreshold: pick('error_threshold', -1),
    miniBatchErrorThreshold: pick('mini_batch_error_threshold', -1),
    maxRetries: retry.max_retries ?? 2,
    timeoutSeconds: retry.timeout ?? 60,
    loggingLevel: pick('logging_level', 'INFO'),
    environmentVariables: merged<Record<string, string>>('environment_variables'),
    ...(partitionKeys !== undefined ? { partitionKeys } : {}),
    taskType: taskSpec.type ?? 'run_function',
    ...(taskSpec.code !== undefined ? { code: taskSpec.code } : {}),
    ...(taskSpec.entry_script !== undefined ? { entryScript: taskSpec.entry_script } : {}),
    environment: taskSpec.environment ?? '',
    programArguments: taskSpec.program_arguments ?? '',
    ...(appendRow !== null ? { appendRowPort: appendRow[1] } : {}),
  };
}
