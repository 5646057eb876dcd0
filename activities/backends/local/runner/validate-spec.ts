import path from 'node:path';
import type { LocalJobFaults, LocalJobSpec, OutputAction } from './job-spec';

const OUTPUT_ACTIONS: readonly OutputAction[] = ['append_row', 'summary_only'];

/** Field names of LocalJobSpec in declaration order, so messages list differences in a stable order. */
const SPEC_FIELDS: readonly (keyof LocalJobSpec)[] = [
  'jobName',
  'manifestPath',
  'inputRoot',
  'codeDirectory',
  'entryScript',
  'programArguments',
  'miniBatchSize',
  'processCount',
  'runInvocationTimeout',
  'maxRetries',
  'errorThreshold',
  'miniBatchErrorThreshold',
  'outputAction',
  'appendRowFileName',
  'pythonExecutable',
  'environment',
  'faults',
];

/**
 * Checks every field of a job spec and returns it typed. Throws an error that names the job, the invalid field,
 * its value and the accepted values, so a bad job.json or caller input fails before any process starts.
 */
export function validateLocalJobSpec(value: unknown, source: string): LocalJobSpec {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`local job spec in ${source} is invalid: expected a JSON object`);
  }
  const spec = value as Record<string, unknown>;
  const jobName = typeof spec.jobName === 'string' && spec.jobName !== '' ? spec.jobName : undefined;
  const invalid = (field: string, expected: string): Error =>
    new Error(
      `local job spec of job ${jobName ?? '(unnamed)'} in ${source} is invalid: ${field} is ${JSON.stringify(spec[field])}; ` +
        `expected ${expected}`,
    );

  if (jobName === undefined || jobName.includes('/') || jobName.includes('\\') || jobName === '.' || jobName === '..') {
    throw invalid('jobName', 'a non-empty folder name without path separators');
  }
  for (const field of ['manifestPath', 'inputRoot', 'codeDirectory', 'pythonExecutable'] as const) {
    const fieldValue = spec[field];
    if (typeof fieldValue !== 'string' || !path.isAbsolute(fieldValue)) throw invalid(field, 'an absolute path');
  }
  const entryScript = spec.entryScript;
  if (
    typeof entryScript !== 'string' ||
    entryScript === '' ||
    path.isAbsolute(entryScript) ||
    path.normalize(entryScript).split(path.sep)[0] === '..'
  ) {
    throw invalid('entryScript', 'a path inside codeDirectory and relative to it, such as "score.py"');
  }
  const programArguments = spec.programArguments;
  if (!Array.isArray(programArguments) || !programArguments.every((argument) => typeof argument === 'string')) {
    throw invalid('programArguments', 'an array of strings');
  }

  checkInteger(spec, 'miniBatchSize', 1, invalid);
  checkInteger(spec, 'processCount', 1, invalid);
  checkInteger(spec, 'maxRetries', 0, invalid);
  checkInteger(spec, 'errorThreshold', -1, invalid);
  checkInteger(spec, 'miniBatchErrorThreshold', -1, invalid);
  const timeout = spec.runInvocationTimeout;
  if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout <= 0) {
    throw invalid('runInvocationTimeout', 'a positive number of seconds');
  }

  if (!OUTPUT_ACTIONS.includes(spec.outputAction as OutputAction)) {
    throw invalid('outputAction', OUTPUT_ACTIONS.map((action) => `"${action}"`).join(' or '));
  }
  const fileName = spec.appendRowFileName;
  if (typeof fileName !== 'string' || fileName === '' || fileName !== path.basename(fileName) || fileName === '..') {
    throw invalid('appendRowFileName', 'a file name without folders, such as "parallel_run_step.txt"');
  }
  const environment = spec.environment;
  if (
    typeof environment !== 'object' ||
    environment === null ||
    Array.isArray(environment) ||
    !Object.values(environment).every((variable) => typeof variable === 'string')
  ) {
    throw invalid('environment', 'an object of string values');
  }
  if (spec.faults !== undefined) {
    const problem = faultsProblem(spec.faults);
    if (problem !== undefined) throw invalid('faults', problem);
  }

  return value as LocalJobSpec;
}

const FAULT_NAMES: readonly (keyof LocalJobFaults)[] = ['repeatMiniBatches'];

/**
 * Checks a `faults` value of a job spec. Returns what was expected when the value is invalid, or undefined when it
 * is valid. Unknown fault names are invalid, so a misspelt fault cannot leave a test running without it.
 */
export function faultsProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return 'an object such as {"repeatMiniBatches": [0, 3]}';
  }
  const unknownNames = Object.keys(value).filter((name) => !FAULT_NAMES.includes(name as keyof LocalJobFaults));
  if (unknownNames.length > 0) {
    return `an object with no fields other than ${FAULT_NAMES.map((name) => `"${name}"`).join(', ')}, but it has ${unknownNames.map((name) => `"${name}"`).join(', ')}`;
  }
  const indexes = (value as LocalJobFaults).repeatMiniBatches;
  if (indexes === undefined) return undefined;
  if (
    !Array.isArray(indexes) ||
    !indexes.every((index) => typeof index === 'number' && Number.isSafeInteger(index) && index >= 0) ||
    new Set(indexes).size !== indexes.length
  ) {
    return 'repeatMiniBatches to be an array of distinct 0-based mini-batch indexes, such as [0, 3]';
  }
  return undefined;
}

function checkInteger(
  spec: Record<string, unknown>,
  field: string,
  minimum: number,
  invalid: (field: string, expected: string) => Error,
): void {
  const fieldValue = spec[field];
  if (typeof fieldValue !== 'number' || !Number.isSafeInteger(fieldValue) || fieldValue < minimum) {
    throw invalid(field, `an integer of at least ${minimum}`);
  }
}

/** Returns the names of the fields whose values differ between two specs, compared as JSON. */
export function differingSpecFields(stored: LocalJobSpec, requested: LocalJobSpec): string[] {
  return SPEC_FIELDS.filter((field) => canonicalJson(stored[field]) !== canonicalJson(requested[field]));
}

/** JSON with object keys sorted, so two equal environments compare equal whatever their key order. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const record = value as Record<string, unknown>;
    const keys = Object.keys(record).sort();
    return `{${keys.map((key) => `${JSON.stringify(key)}:${canonicalJson(record[key])}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'undefined';
}
