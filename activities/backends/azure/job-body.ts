import { createHash } from 'node:crypto';
import type { JobSettings } from '../../types';

/**
 * Request bodies for the component version and the pipeline job, in the shape the Azure ML service expects for
 * api-version 2022-10-01. `componentSpec` and the pipeline's `jobs` are free-form in the REST specification; their
 * snake_case keys follow the Azure ML Python SDK's serialization of a parallel component and node (azure-ai-ml,
 * `entities/_component/parallel_component.py` and `entities/_builders/parallel.py`).
 */

/** Name of the pipeline's single parallel node. */
export const PARALLEL_NODE_NAME = 'score';
/** Name of the component's folder input. */
export const INPUT_NAME = 'input_data';
/** Name of the `uri_file` output that append_row writes to. */
export const OUTPUT_NAME = 'scores';

export interface ComponentSpecOptions {
  settings: JobSettings;
  /** ARM id of the code version, without the `azureml:` prefix. */
  codeId: string;
  /** `azureml:`-prefixed environment id (ARM id, short form or registry id). */
  environmentId: string;
  instanceCount: number;
  processCount: number;
  environmentVariables: Record<string, string>;
}

/** Builds the parallel component's spec; its hash is the component version, so equal settings reuse one version. */
export function buildComponentSpec(options: ComponentSpecOptions): Record<string, unknown> {
  const { settings } = options;
  const appendRow = settings.outputAction === 'append_row';
  return {
    name: COMPONENT_NAME,
    type: 'parallel',
    display_name: 'amlbatch parallel scoring',
    description: 'Parallel scoring step submitted by amlbatch',
    is_deterministic: false,
    inputs: { [INPUT_NAME]: { type: 'uri_folder', optional: false } },
    outputs: appendRow ? { [OUTPUT_NAME]: { type: 'uri_file' } } : {},
    input_data: `\${{inputs.${INPUT_NAME}}}`,
    mini_batch_size: String(settings.miniBatchSize),
    resources: { instance_count: options.instanceCount },
    max_concurrency_per_instance: options.processCount,
    error_threshold: settings.errorThreshold,
    mini_batch_error_threshold: settings.miniBatchErrorThreshold,
    logging_level: 'INFO',
    retry_settings: { max_retries: settings.maxRetries, timeout: settings.runInvocationTimeout },
    environment_variables: options.environmentVariables,
    task: {
      type: 'run_function',
      code: `azureml:${options.codeId}`,
      entry_script: settings.entryScript,
      environment: options.environmentId,
      program_arguments: toProgramArgumentsString(settings.programArguments),
      ...(appendRow ? { append_row_to: `\${{outputs.${OUTPUT_NAME}}}` } : {}),
    },
  };
}

export const COMPONENT_NAME = 'amlbatch_parallel_score';

export interface PipelineJobOptions {
  displayName: string;
  experimentName: string;
  tags: Record<string, string>;
  computeId: string;
  componentId: string;
  inputUri: string;
  /** `azureml://` URI of the append_row file; absent with summary_only. */
  outputUri?: string;
  settings: JobSettings;
  instanceCount: number;
  processCount: number;
}

/**
 * Builds the PipelineJob body with one parallel node that reads the input folder and writes the append_row file.
 * The data input and output sit on the node, not on the pipeline, because `@azure/arm-machinelearning` 2.1.1
 * serializes a pipeline-level `uri_folder` input or `uri_file` output as its base type. That drops `uri` and `mode`,
 * which the service requires. The node dictionary `jobs` is sent unchanged.
 */
export function buildPipelineJob(options: PipelineJobOptions): Record<string, unknown> {
  const { settings } = options;
  return {
    jobType: 'Pipeline',
    displayName: options.displayName,
    experimentName: options.experimentName,
    description: 'Batch scoring submitted by amlbatch',
    tags: options.tags,
    settings: { default_compute: options.computeId, continue_on_step_failure: false },
    jobs: {
      [PARALLEL_NODE_NAME]: {
        type: 'parallel',
        name: PARALLEL_NODE_NAME,
        display_name: PARALLEL_NODE_NAME,
        componentId: options.componentId,
        computeId: options.computeId,
        inputs: { [INPUT_NAME]: { job_input_type: 'uri_folder', uri: options.inputUri, mode: 'ReadOnlyMount' } },
        outputs: options.outputUri
          ? { [OUTPUT_NAME]: { job_output_type: 'uri_file', uri: options.outputUri, mode: 'ReadWriteMount' } }
          : {},
        resources: { instance_count: options.instanceCount },
        max_concurrency_per_instance: options.processCount,
        mini_batch_size: settings.miniBatchSize,
        error_threshold: settings.errorThreshold,
        mini_batch_error_threshold: settings.miniBatchErrorThreshold,
        retry_settings: { max_retries: settings.maxRetries, timeout: settings.runInvocationTimeout },
        logging_level: 'INFO',
        _source: 'REMOTE.WORKSPACE.COMPONENT',
      },
    },
  };
}

/**
 * Joins arguments into the one string Azure ML's `program_arguments` takes, quoting any that hold spaces, quotes or
 * shell characters with single quotes so the runtime splits them back into the same list.
 */
export function toProgramArgumentsString(args: string[]): string {
  return args
    .map((arg) => (arg !== '' && /^[A-Za-z0-9_\-./:=@%+,${}]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'"'"'`)}'`))
    .join(' ');
}

/** A short content hash used as an asset version: the same content always maps to the same version. */
export function contentVersion(...parts: string[]): string {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part).update('\0');
  return hash.digest('hex').slice(0, 16);
}

/** Azure ML names allow letters, digits, `-` and `_`, up to 255 characters, starting with a letter or digit. */
export function toAzureName(text: string, maxLength = 255): string {
  const cleaned = text.replace(/[^A-Za-z0-9_-]/g, '_').replace(/^[^A-Za-z0-9]+/, '');
  if (cleaned === text && cleaned.length <= maxLength) return cleaned;
  const suffix = createHash('sha256').update(text).digest('hex').slice(0, 10);
  return `${cleaned.slice(0, maxLength - 11) || 'x'}-${suffix}`;
}
