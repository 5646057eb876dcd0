/**
 * Rules for an operator's retry of a failed stage: which failures wait for an operator, which input fields a
 * retry may correct, and how corrections are merged and validated. Pure and deterministic, so the workflow's
 * signal handler and the CLI (which checks a correction before sending it) run the same code.
 */
import { InvalidBatchInputError, validateBatchInput, type InputProblem, type ResolvedBatchInput } from './input';
import type { StageName } from './stage-options';

/**
 * Failure types a person can fix, so a stage that fails with one waits for a `retry` or `abort` signal instead of
 * failing the batch. Retryable failures wait too once the stage's retries are exhausted. `JobCanceled` (the job was
 * cancelled outside the batch) and `NotAvailable` (the worker lacks the backend) fail the batch at once.
 */
export const OPERATOR_FIXABLE_FAILURES: readonly string[] = [
  'InvalidInput',
  'NotFound',
  'PermissionDenied',
  'Conflict',
  'JobFailed',
  'JobUnreachable',
];

/** Settings of a new scoring job; a retry of a failed job may change them because it submits a new job. */
const JOB_FIELDS = [
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
  'azure.compute',
  'azure.instanceCount',
  'azure.environment',
  'azure.environmentVariables',
  'azure.experimentName',
];

/** Fields every retry may change: how the rest of the batch handles failures. */
const FAILURE_POLICY_FIELDS = ['assetsOnFailure', 'operatorRetryTimeout'];

/**
 * Input fields, as dotted paths, that a retry of each stage may correct. A path also allows every field below
 * it (`azure.datastore` allows `azure.datastore.allowUpdate`). Fields of stages that already finished are not
 * listed, because finished stages are never run again.
 */
const STAGE_RETRY_FIELDS: Record<StageName, readonly string[]> = {
  authenticate: ['azure.subscriptionId', 'azure.resourceGroup', 'azure.workspaceName', 'azure.keyVaultUrl'],
  checkVaultAccess: ['secretNames', 'azure.keyVaultUrl', 'azure.datastore.secretName'],
  ensureDatastore: ['inputFolder', 'azure.datastore'],
  registerDataset: ['programArguments', 'runInvocationTimeout', 'miniBatchSize'],
  selectItems: ['resultsFolder'],
  submitScoringJob: JOB_FIELDS,
  waitForJob: JOB_FIELDS,
  collectResults: ['resultsFolder'],
};

/**
 * Returns the input fields a retry of `stage` may correct after a failure of type `failureType`. Only a failed job
 * can take new job settings, because its retry submits a new job. A wait that failed for another reason waits
 * again on the same job.
 */
export function retryFieldsFor(stage: StageName, failureType: string): string[] {
  const stageFields = stage === 'waitForJob' && failureType !== 'JobFailed' ? [] : STAGE_RETRY_FIELDS[stage];
  return [...stageFields, ...FAILURE_POLICY_FIELDS];
}

/** Returns whether a retry of `stage` after `failureType` submits a new job and waits for it. */
export function retrySubmitsNewJob(stage: StageName, failureType: string): boolean {
  return stage === 'waitForJob' && failureType === 'JobFailed';
}

/** The batch input after an accepted retry: the raw fields as a user would write them, and their validated form. */
export interface CorrectedInput {
  raw: Record<string, unknown>;
  resolved: ResolvedBatchInput;
  /** Dotted paths of the fields the correction set or removed. */
  changedFields: string[];
}

/**
 * Applies an operator's corrections to the batch input and validates the result like a new input. `corrections`
 * is a JSON merge patch (RFC 7386): objects merge field by field, `null` removes a field so its default applies,
 * any other value replaces. Throws `InvalidBatchInputError` naming each field that the stage does not allow to
 * change or whose new value is invalid.
 */
export function applyCorrections(
  stage: StageName,
  failureType: string,
  currentInput: Record<string, unknown>,
  corrections: unknown,
): CorrectedInput {
  if (corrections === undefined || corrections === null) {
    return { raw: currentInput, resolved: validateBatchInput(currentInput), changedFields: [] };
  }
  if (typeof corrections !== 'object' || Array.isArray(corrections)) {
    throw new InvalidBatchInputError([
      { field: '(retry)', value: corrections, allowed: 'an object of corrected input fields, e.g. {"errorThreshold": 10}, or nothing' },
    ]);
  }

  const allowed = retryFieldsFor(stage, failureType);
  const changedFields = leafPaths(corrections as Record<string, unknown>);
  const problems: InputProblem[] = changedFields
    .filter((field) => !allowed.some((prefix) => field === prefix || field.startsWith(`${prefix}.`)))
    .map((field) => ({
      field,
      value: valueAt(corrections as Record<string, unknown>, field),
      allowed:
        `no change when retrying stage ${stage}; ` +
        (allowed.length > 0 ? `a retry of ${stage} may change ${allowed.join(', ')}` : `a retry of ${stage} takes no corrections`),
    }));
  if (problems.length > 0) throw new InvalidBatchInputError(problems);

  const raw = mergePatch(currentInput, corrections as Record<string, unknown>);
  return { raw, resolved: validateBatchInput(raw), changedFields };
}

/** Applies a JSON merge patch (RFC 7386) without modifying either argument. */
export function mergePatch(target: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  const result: Record<string, unknown> = { ...target };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      delete result[key];
    } else if (isPlainObject(value)) {
      const current = result[key];
      result[key] = mergePatch(isPlainObject(current) ? current : {}, value);
    } else {
      result[key] = value;
    }
  }
  return result;
}

/** Dotted paths of the values a merge patch sets or removes; arrays and scalars end a path. */
function leafPaths(patch: Record<string, unknown>, prefix = ''): string[] {
  return Object.entries(patch).flatMap(([key, value]) => {
    const path = `${prefix}${key}`;
    return isPlainObject(value) && Object.keys(value).length > 0 ? leafPaths(value, `${path}.`) : [path];
  });
}

function valueAt(object: Record<string, unknown>, path: string): unknown {
  return path.split('.').reduce<unknown>((current, key) => (isPlainObject(current) ? current[key] : undefined), object);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
