import { randomBytes } from 'node:crypto';
import {
  Client,
  Connection,
  WorkflowFailedError,
  WorkflowNotFoundError,
  defaultPayloadConverter,
  type WorkflowExecutionDescription,
  type WorkflowExecutionStatusName,
} from '@temporalio/client';
import { loadClientConnectConfig } from '@temporalio/envconfig';
import { WORKFLOW_TYPE, workflowUiLink, type AmlbatchConfig } from '../common/config';
import type { JobPoll } from '../activities/backends/backend';
import { validateBatchInput, type BatchScoringInput } from '../workflows/input';
import type { BatchStatus, BatchSummary } from '../workflows/summary';

/** Thrown by `BatchClient.connect` when no Temporal server answers at the configured address. */
export class TemporalUnreachableError extends Error {
  constructor(
    readonly address: string,
    cause: unknown,
  ) {
    super(
      `cannot reach the Temporal server at ${address}: ${(cause as Error)?.message ?? cause}. ` +
        'Start one with `npm run demo -- --keep-running`, or set TEMPORAL_ADDRESS (and TEMPORAL_NAMESPACE) to a running server',
      { cause },
    );
    this.name = 'TemporalUnreachableError';
  }
}

/** Thrown when no workflow execution has the given id in the namespace. */
export class BatchNotFoundError extends Error {
  constructor(
    readonly workflowId: string,
    readonly namespace: string,
  ) {
    super(`no batch with workflow id "${workflowId}" in namespace "${namespace}"; run \`amlbatch list\` to see the batches`);
    this.name = 'BatchNotFoundError';
  }
}

export interface BatchDescription {
  workflowId: string;
  runId: string;
  status: WorkflowExecutionStatusName;
  startTime: Date;
  closeTime?: Date;
  /** From the workflow's `status` query; absent when no worker answered it. */
  batch?: BatchStatus;
  /** The job's latest progress, from the waiting activity's heartbeat. */
  job?: JobPoll;
  /** Failure message of a failed batch. */
  failure?: string;
}

export interface BatchListEntry {
  workflowId: string;
  status: WorkflowExecutionStatusName;
  startTime: Date;
  closeTime?: Date;
}

/** A typed client for amlbatch batches: start, describe, wait for and list `batchScoring` workflows. */
export class BatchClient {
  private constructor(
    readonly client: Client,
    readonly namespace: string,
    private readonly config: AmlbatchConfig,
    private readonly connection?: Connection,
  ) {}

  /** Connects with the `TEMPORAL_*` settings; throws `TemporalUnreachableError` when the server does not answer. */
  static async connect(config: AmlbatchConfig): Promise<BatchClient> {
    const { connectionOptions, namespace = 'default' } = loadClientConnectConfig();
    const address = connectionOptions.address ?? 'localhost:7233';
    let connection: Connection;
    try {
      connection = await Connection.connect({ ...connectionOptions, address, connectTimeout: '5 seconds' });
    } catch (error) {
      throw new TemporalUnreachableError(address, error);
    }
    return new BatchClient(new Client({ connection, namespace }), namespace, config, connection);
  }

  /** Wraps an existing client, for tests and embedding. */
  static fromClient(client: Client, config: AmlbatchConfig): BatchClient {
    return new BatchClient(client, client.options.namespace, config);
  }

  async close(): Promise<void> {
    await this.connection?.close();
  }

  /** Validates the input locally, then starts a batch. Returns its workflow id and Temporal UI link. */
  async start(input: BatchScoringInput, workflowId = newWorkflowId()): Promise<{ workflowId: string; uiLink: string }> {
    validateBatchInput(input);
    await this.client.workflow.start(WORKFLOW_TYPE, {
      taskQueue: this.config.taskQueue,
      workflowId,
      args: [input],
      staticSummary: `Score ${input.inputFolder}`,
    });
    return { workflowId, uiLink: this.uiLink(workflowId) };
  }

  uiLink(workflowId: string): string {
    return workflowUiLink(this.config, this.namespace, workflowId);
  }

  async describe(workflowId: string): Promise<BatchDescription> {
    const handle = this.client.workflow.getHandle(workflowId);
    const description = await handle.describe().catch((error: unknown) => this.rethrowNotFound(workflowId, error));
    const result: BatchDescription = {
      workflowId,
      runId: description.runId,
      status: description.status.name,
      startTime: description.startTime,
      ...(description.closeTime ? { closeTime: description.closeTime } : {}),
    };

    if (description.status.name === 'RUNNING') {
      result.batch = await handle.query<BatchStatus>('status').catch(() => undefined);
      result.job = findJobPoll(description.raw.pendingActivities ?? []);
    } else if (description.status.name === 'FAILED') {
      result.failure = await handle.result().then(
        () => undefined,
        (error: unknown) => failureText(error),
      );
    }
    return result;
  }

  /** Waits for the batch to end and returns its summary; a failed batch throws with the stage's reason. */
  async result(workflowId: string): Promise<BatchSummary> {
    const handle = this.client.workflow.getHandle(workflowId);
    try {
      return (await handle.result()) as BatchSummary;
    } catch (error) {
      if (error instanceof WorkflowFailedError) throw new Error(`batch ${workflowId} failed: ${failureText(error)}`, { cause: error });
      return this.rethrowNotFound(workflowId, error);
    }
  }

  async list(limit: number): Promise<BatchListEntry[]> {
    const entries: BatchListEntry[] = [];
    for await (const execution of this.client.workflow.list({ query: `WorkflowType = '${WORKFLOW_TYPE}'` })) {
      entries.push({
        workflowId: execution.workflowId,
        status: execution.status.name,
        startTime: execution.startTime,
        ...(execution.closeTime ? { closeTime: execution.closeTime } : {}),
      });
      if (entries.length >= limit) break;
    }
    return entries;
  }

  private rethrowNotFound(workflowId: string, error: unknown): never {
    if (error instanceof WorkflowNotFoundError) throw new BatchNotFoundError(workflowId, this.namespace);
    throw error;
  }
}

type PendingActivities = NonNullable<WorkflowExecutionDescription['raw']['pendingActivities']>;

/** Reads the job progress that the `waitForJob` activity reports in its heartbeat details. */
function findJobPoll(pending: PendingActivities): JobPoll | undefined {
  const waiting = pending.find((activity) => activity.activityType?.name === 'waitForJob');
  const payload = waiting?.heartbeatDetails?.payloads?.[0];
  if (!payload) return undefined;
  try {
    return defaultPayloadConverter.fromPayload<JobPoll>(payload);
  } catch {
    return undefined;
  }
}

/** The most specific message of a workflow failure: the stage's own reason rather than the SDK's wrappers. */
export function failureText(error: unknown): string {
  const messages: string[] = [];
  let current: unknown = error instanceof WorkflowFailedError ? error.cause : error;
  while (current instanceof Error) {
    messages.push(current.message);
    current = current.cause;
  }
  return messages[0] ?? String(error);
}

/** Returns a workflow id that sorts by start time and is unique enough for one user: `batch-<UTC time>-<random>`. */
export function newWorkflowId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
  return `batch-${stamp}-${randomBytes(3).toString('hex')}`;
}
