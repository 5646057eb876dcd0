import { randomBytes } from 'node:crypto';
import {
  CancelledFailure,
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  WorkflowNotFoundError,
  defaultPayloadConverter,
  isGrpcServiceError,
  type WorkflowExecutionDescription,
  type WorkflowExecutionStatusName,
} from '@temporalio/client';
import { WORKFLOW_TYPE, loadTemporalConnectConfig, workflowUiLink, type AmlbatchConfig } from '../common/config';
import type { WaitHeartbeat } from '../activities/wait-for-job';
import { validateBatchInput, type BatchScoringInput } from '../workflows/input';
import { abortSignal, retrySignal, statusQuery } from '../workflows/messages';
import { applyCorrections } from '../workflows/operator-retry';
import { AMLBATCH_SEARCH_ATTRIBUTES } from '../workflows/search-attributes';
import type { BatchStatus, BatchSummary, PendingFailure } from '../workflows/summary';

/** gRPC status codes (grpc/grpc doc/statuscodes.md) of a server that does not let this client list search attributes. */
const GRPC_PERMISSION_DENIED = 7;
const GRPC_UNIMPLEMENTED = 12;

/** Thrown by `BatchClient.connect` when no Temporal server responds at the configured address. */
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

/**
 * Thrown by `BatchClient.start` when the namespace lacks amlbatch's search attributes, which a batch cannot run
 * without: its first workflow task would fail until they are registered.
 */
export class SearchAttributesMissingError extends Error {
  constructor(
    readonly missing: string[],
    readonly namespace: string,
  ) {
    super(
      `namespace "${namespace}" lacks the search attribute${missing.length > 1 ? 's' : ''} ${missing.join(', ')} that batches upsert; ` +
        `register ${missing.length > 1 ? 'them' : 'it'} with ${missing
          .map((name) => `\`temporal operator search-attribute create --namespace ${namespace} --name ${name} --type Keyword\``)
          .join(' and ')}`,
    );
    this.name = 'SearchAttributesMissingError';
  }
}

/** Thrown by `retry` and `abort` when the batch has no stage waiting for an operator. */
export class NoPendingFailureError extends Error {
  constructor(
    readonly workflowId: string,
    state: string,
  ) {
    super(`batch ${workflowId} has no failed stage waiting for an operator (it is ${state}); see \`amlbatch status ${workflowId}\``);
    this.name = 'NoPendingFailureError';
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
  /** From the workflow's `status` query; absent when no worker responded to it. */
  batch?: BatchStatus;
  /**
   * The job's latest progress: from the `waitForJob` activity's heartbeat while it runs, else what the workflow last
   * saw. Heartbeats reach the server without adding history events, but workflow code cannot read them, so the
   * client merges them here instead of the workflow signalling itself on every poll.
   */
  job?: { jobName: string; status: string; progress: WaitHeartbeat['progress']; observedAt?: string };
  /** Failure message of a failed batch; `cancelled` for a cancelled one. */
  failure?: string;
}

/** Thrown by `BatchClient.rescore` when the batch cannot be rescored now; the message gives the reason and the fix. */
export class RescoreRejectedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RescoreRejectedError';
  }
}

export interface RescoreStart {
  workflowId: string;
  uiLink: string;
  /** Failed items in the completed batch's ledger when it ended: at most this many are scored again. Unknown for a
   * batch that failed or was cancelled. */
  failedItems?: number;
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

  /** Connects with the `TEMPORAL_*` settings; throws `TemporalUnreachableError` when the server does not respond. */
  static async connect(config: AmlbatchConfig): Promise<BatchClient> {
    // The same loader as the worker's, so both reject the TLS settings the SDK would silently ignore.
    const { connectionOptions, namespace } = loadTemporalConnectConfig();
    const address = connectionOptions.address;
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

  /**
   * Validates the input locally, checks that the namespace has amlbatch's search attributes, then starts a batch.
   * Returns its workflow id and Temporal UI link.
   */
  async start(input: BatchScoringInput, workflowId = newWorkflowId()): Promise<{ workflowId: string; uiLink: string }> {
    validateBatchInput(input);
    await this.checkSearchAttributes();
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

    // A running worker also replays a closed batch to run the query, which shows the batch's undo steps.
    const batch = await handle.query(statusQuery).catch(() => undefined);
    if (batch) result.batch = batch;
    const live = description.status.name === 'RUNNING' ? findJobPoll(description.raw.pendingActivities ?? []) : undefined;
    if (live) {
      result.job = { jobName: live.jobName, status: live.status, progress: live.progress, ...(live.polledAt ? { observedAt: live.polledAt } : {}) };
    } else if (batch?.job && batch.jobName) {
      result.job = { jobName: batch.jobName, status: batch.job.status, progress: batch.job.progress, observedAt: batch.job.observedAt };
    }
    if (description.status.name === 'FAILED' || description.status.name === 'CANCELLED') {
      result.failure = await handle.result().then(
        () => undefined,
        (error: unknown) => failureText(error),
      );
    }
    return result;
  }

  /** Requests cancellation: the batch stops its job, undoes what it created and ends as cancelled. */
  async cancel(workflowId: string): Promise<void> {
    await this.client.workflow
      .getHandle(workflowId)
      .cancel()
      .catch((error: unknown) => this.rethrowNotFound(workflowId, error));
  }

  /**
   * Sends `retry` to a batch whose failed stage waits for an operator. `corrections` (a JSON merge patch of input
   * fields) are validated here first with the workflow's own rules, so a mistake is reported at once. The workflow
   * validates them again. Returns the failure that was retried.
   */
  async retry(workflowId: string, corrections?: Record<string, unknown>): Promise<PendingFailure> {
    const pending = await this.pendingFailure(workflowId);
    applyCorrections(pending.stage, pending.failureType, pending.input, corrections);
    await this.client.workflow.getHandle(workflowId).signal(retrySignal, corrections);
    return pending;
  }

  /** Sends `abort` to a batch whose failed stage waits for an operator; the batch then compensates and fails. */
  async abort(workflowId: string, reason?: string): Promise<PendingFailure> {
    const pending = await this.pendingFailure(workflowId);
    await this.client.workflow.getHandle(workflowId).signal(abortSignal, reason !== undefined ? { reason } : {});
    return pending;
  }

  private async pendingFailure(workflowId: string): Promise<PendingFailure> {
    const handle = this.client.workflow.getHandle(workflowId);
    const batch = await handle.query(statusQuery).catch((error: unknown) => this.rethrowNotFound(workflowId, error));
    if (!batch.pendingFailure) throw new NoPendingFailureError(workflowId, batch.state ?? 'running');
    return batch.pendingFailure;
  }

  /**
   * Throws `SearchAttributesMissingError` when the namespace lacks one of amlbatch's search attributes. A server
   * that does not let this client list them (no operator permission) is not checked.
   */
  private async checkSearchAttributes(): Promise<void> {
    let registered: string[];
    try {
      const response = await this.client.connection.operatorService.listSearchAttributes({ namespace: this.namespace });
      registered = Object.keys(response.customAttributes ?? {});
    } catch (error) {
      const code: number | undefined = isGrpcServiceError(error) ? error.code : undefined;
      if (code === GRPC_PERMISSION_DENIED || code === GRPC_UNIMPLEMENTED) return;
      throw error;
    }
    const missing = AMLBATCH_SEARCH_ATTRIBUTES.map(({ name }) => name).filter((name) => !registered.includes(name));
    if (missing.length > 0) throw new SearchAttributesMissingError(missing, this.namespace);
  }

  /**
   * Starts a rescore of a finished batch: a new batch that scores only the items the batch's item ledger records
   * as failed, with the batch's own input, dataset version and results folder. A completed batch gives them in its
   * summary. A batch that failed or was cancelled after collecting rows gives them in its status query, so a worker
   * must be running. Rescores of a batch, and rescores of those, are named `<first batch>-rescore-<n>`, numbered on
   * from the last, and only one of them runs at a time, because they share one results folder.
   * Returns undefined, starting nothing, when the completed batch has no failed items.
   */
  async rescore(workflowId: string, options: { followUpRounds?: number } = {}): Promise<RescoreStart | undefined> {
    const handle = this.client.workflow.getHandle(workflowId);
    const description = await handle.describe().catch((error: unknown) => this.rethrowNotFound(workflowId, error));
    const status = description.status.name;
    if (status === 'RUNNING' || status === 'CONTINUED_AS_NEW') {
      throw new RescoreRejectedError(`batch ${workflowId} is still running; wait for it to end (amlbatch watch ${workflowId}), then rescore it`);
    }

    let origin: { resultsFolder: string; datasetVersion: string; failedItems?: number };
    if (status === 'COMPLETED') {
      const summary = (await handle.result()) as BatchSummary;
      if (!summary.ledger || summary.outputLocation === undefined || summary.dataset === undefined) {
        throw new RescoreRejectedError(`batch ${workflowId} has no item ledger (outcome ${summary.outcome}), so there is nothing to rescore`);
      }
      if (summary.ledger.failed === 0) return undefined;
      origin = { resultsFolder: summary.outputLocation, datasetVersion: summary.dataset.version, failedItems: summary.ledger.failed };
    } else {
      const batch = await handle.query(statusQuery).catch(() => undefined);
      if (!batch) {
        throw new RescoreRejectedError(
          `batch ${workflowId} is ${status} and no worker responded to its status query, which names its results folder; ` +
            `start a worker (npm run worker) and run the rescore again`,
        );
      }
      if (batch.resultsFolder === undefined || batch.dataset === undefined) {
        throw new RescoreRejectedError(
          `batch ${workflowId} is ${status} and never collected any rows, so it has no item ledger to rescore from; start a new batch (amlbatch score)`,
        );
      }
      origin = { resultsFolder: batch.resultsFolder, datasetVersion: batch.dataset.version };
    }

    const original = await this.startInput(workflowId);
    const firstBatch = await this.firstBatchOf(workflowId, original);
    const rescoreId = await this.nextRescoreId(firstBatch);
    const input: BatchScoringInput = {
      ...original,
      resultsFolder: origin.resultsFolder,
      rescore: { workflowId, datasetVersion: origin.datasetVersion },
      ...(options.followUpRounds !== undefined ? { followUpRounds: options.followUpRounds } : {}),
    };
    try {
      const started = await this.start(input, rescoreId);
      return { ...started, ...(origin.failedItems !== undefined ? { failedItems: origin.failedItems } : {}) };
    } catch (error) {
      if (error instanceof WorkflowExecutionAlreadyStartedError) {
        throw new RescoreRejectedError(
          `rescore ${rescoreId} of batch ${firstBatch} was started by someone else a moment ago; wait for it (amlbatch watch ${rescoreId})`,
        );
      }
      throw error;
    }
  }

  /** Follows a chain of rescores back to the batch that started it. */
  private async firstBatchOf(workflowId: string, input: BatchScoringInput): Promise<string> {
    let current = workflowId;
    let currentInput = input;
    const seen = new Set([current]);
    while (currentInput.rescore !== undefined && !seen.has(currentInput.rescore.workflowId)) {
      current = currentInput.rescore.workflowId;
      seen.add(current);
      currentInput = await this.startInput(current);
    }
    return current;
  }

  /** Reads the input a batch was started with from the first event of its history. */
  private async startInput(workflowId: string): Promise<BatchScoringInput> {
    const history = await this.client.workflow.getHandle(workflowId).fetchHistory();
    const payloads = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads;
    if (!payloads || payloads.length === 0) throw new Error(`batch ${workflowId} has no input in its history`);
    return defaultPayloadConverter.fromPayload<BatchScoringInput>(payloads[0]);
  }

  /**
   * Finds the first unused `<firstBatch>-rescore-<n>`. Throws `RescoreRejectedError` while an earlier rescore of the
   * same batch is still running.
   */
  private async nextRescoreId(firstBatch: string): Promise<string> {
    for (let n = 1; ; n += 1) {
      const candidate = `${firstBatch}-rescore-${n}`;
      let status: string;
      try {
        status = (await this.client.workflow.getHandle(candidate).describe()).status.name;
      } catch (error) {
        if (error instanceof WorkflowNotFoundError) return candidate;
        throw error;
      }
      if (status === 'RUNNING') {
        throw new RescoreRejectedError(
          `rescore ${candidate} of batch ${firstBatch} is still running, and two rescores would write to the same results; ` +
            `wait for it (amlbatch watch ${candidate})`,
        );
      }
    }
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
function findJobPoll(pending: PendingActivities): Partial<WaitHeartbeat> & Pick<WaitHeartbeat, 'jobName' | 'status' | 'progress'> | undefined {
  const waiting = pending.find((activity) => activity.activityType?.name === 'waitForJob');
  const payload = waiting?.heartbeatDetails?.payloads?.[0];
  if (!payload) return undefined;
  try {
    return defaultPayloadConverter.fromPayload<WaitHeartbeat>(payload);
  } catch {
    return undefined;
  }
}

/** Returns the most specific message of a workflow failure: the stage's own reason rather than the SDK's wrappers. */
export function failureText(error: unknown): string {
  if (error instanceof WorkflowFailedError && error.cause instanceof CancelledFailure) return 'cancelled';
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
