/**
 * Jobs of the emulated workspace: their stored definitions, status and status history, and the rules for a PUT on
 * an existing name.
 */
import { isDeepStrictEqual } from 'node:util';
import { userError } from './arm-errors';
import { childArmId, notFoundError, systemData, type ResourceTimes, type WorkspaceIdentity } from './workspace';

/** `JobStatus` values the emulator moves a job through; the spec's enum has more, which it never reports. */
export type JobStatus =
  | 'NotStarted'
  | 'Queued'
  | 'Preparing'
  | 'Running'
  | 'Finalizing'
  | 'CancelRequested'
  | 'Completed'
  | 'Failed'
  | 'Canceled';

const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set<JobStatus>(['Completed', 'Failed', 'Canceled']);

export function isTerminalStatus(status: JobStatus): boolean {
  return TERMINAL_STATUSES.has(status);
}

/**
 * Fields that a PUT on an existing job may change, as the service's error for a changed job lists them:
 * "Only description, tags, displayName, properties, and isArchived can be updated."
 */
const MUTABLE_JOB_FIELDS = ['description', 'tags', 'displayName', 'properties', 'isArchived'] as const;

const JOB_EXISTS_MESSAGE =
  'A job with this name already exists. If you are trying to create a new job, use a different name. If you are ' +
  "trying to update an existing job, the existing job's Settings, Inputs, Outputs, Jobs, InputBindings, " +
  'OutputBindings cannot be changed. Only description, tags, displayName, properties, and isArchived can be updated.';

export interface JobRecord extends ResourceTimes {
  name: string;
  /** The job's properties as submitted, with the spec's defaults filled in; `status` is kept apart. */
  properties: Record<string, unknown>;
  status: JobStatus;
  /** Every status the job has had, in order, starting with NotStarted. */
  history: JobStatus[];
  cancelRequested: boolean;
}

export class JobStore {
  private readonly records = new Map<string, JobRecord>();

  constructor(private readonly workspace: WorkspaceIdentity) {}

  get(name: string): JobRecord | undefined {
    return this.records.get(name);
  }

  require(name: string): JobRecord {
    const record = this.records.get(name);
    if (record === undefined) throw notFoundError(this.workspace, 'jobs', name);
    return record;
  }

  /**
   * Creates a job from a validated PUT body, or applies a PUT to an existing one: only the mutable fields may
   * differ, otherwise the service's "already exists" UserError (400) is thrown.
   */
  put(name: string, properties: Record<string, unknown>): { created: boolean; record: JobRecord } {
    const normalized = normalizeJobProperties(properties);
    const now = new Date().toISOString();
    const existing = this.records.get(name);
    if (existing === undefined) {
      const record: JobRecord = {
        name,
        properties: normalized,
        status: 'NotStarted',
        history: ['NotStarted'],
        cancelRequested: false,
        createdAt: now,
        modifiedAt: now,
      };
      this.records.set(name, record);
      return { created: true, record };
    }

    const immutable = (value: Record<string, unknown>): Record<string, unknown> => {
      const copy = { ...value };
      for (const field of MUTABLE_JOB_FIELDS) delete copy[field];
      return copy;
    };
    if (!isDeepStrictEqual(immutable(existing.properties), immutable(normalized))) {
      // NOTE: the HTTP status of this error is unconfirmed. UserError responses are 400 elsewhere in the service.
      // The service nests the codes Immutable and JobPropertyImmutable in an `innerError`, a field that the spec's
      // ErrorDetail does not allow, so the emulator reports the innermost code as a detail.
      throw userError(JOB_EXISTS_MESSAGE, {
        target: name,
        details: [{ code: 'JobPropertyImmutable', message: `Job ${name} exists with other settings, inputs, outputs or jobs.`, target: name }],
      });
    }
    for (const field of MUTABLE_JOB_FIELDS) {
      if (field in normalized) existing.properties[field] = normalized[field];
      else delete existing.properties[field];
    }
    existing.modifiedAt = now;
    return { created: false, record: existing };
  }

  delete(name: string): boolean {
    return this.records.delete(name);
  }

  /** Jobs with the tag key `tag` (any value) when given, of `jobType` when given, in the `view`; newest first. */
  list(filter: { tag?: string; jobType?: string; view: 'ActiveOnly' | 'ArchivedOnly' | 'All' }): JobRecord[] {
    return [...this.records.values()]
      .filter((record) => filter.tag === undefined || Object.hasOwn((record.properties.tags ?? {}), filter.tag))
      .filter((record) => filter.jobType === undefined || String(record.properties.jobType).toLowerCase() === filter.jobType.toLowerCase())
      .filter((record) => {
        const archived = record.properties.isArchived === true;
        return filter.view === 'All' || (filter.view === 'ArchivedOnly' ? archived : !archived);
      })
      .sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }

  /** Records a new status; the history keeps each change once. */
  setStatus(record: JobRecord, status: JobStatus): void {
    if (record.status === status) return;
    record.status = status;
    record.history.push(status);
    record.modifiedAt = new Date().toISOString();
  }

  toResource(record: JobRecord): Record<string, unknown> {
    return {
      id: childArmId(this.workspace, 'jobs', record.name),
      name: record.name,
      type: 'Microsoft.MachineLearningServices/workspaces/jobs',
      systemData: systemData(record),
      properties: { ...structuredClone(record.properties), status: record.status },
    };
  }
}

/** Fills the spec's defaults that the service stores with a job, and drops the read-only `status`. */
function normalizeJobProperties(properties: Record<string, unknown>): Record<string, unknown> {
  const normalized: Record<string, unknown> = { experimentName: 'Default', isArchived: false, ...structuredClone(properties) };
  delete normalized.status;
  return normalized;
}
