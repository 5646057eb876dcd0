/**
 * An emulator of the Azure Machine Learning control plane (ARM, api-version 2022-10-01) for tests. It is an HTTPS
 * server on a loopback port that serves the workspace, datastore, asset and job operations amlbatch calls. It
 * checks every request and response against the official OpenAPI spec, runs submitted parallel jobs for real with
 * the local parallel runner over an Azurite storage account, and injects faults on request.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { defaultPythonExecutable } from '../../../common/project-paths';
import { DriverLog, errorFields } from '../../../activities/backends/local/runner/driver-log';
import { createTestCertificate } from '../tls';
import { registerAssetRoutes } from './asset-routes';
import { AssetStore } from './asset-store';
import { BlobStorage, type BlobLocation, type StorageAccount } from './blob-storage';
import type { EmulatorContext, TrackedOperation } from './context';
import { ARTIFACT_DATASTORE_NAME, DatastoreStore, DEFAULT_DATASTORE_NAME } from './datastores';
import { FaultInjector, type ActiveFault, type FaultRule } from './faults';
import { JobExecutor, type JobExecutionContext } from './job-execution';
import { jobLogPrefix } from './job-logs';
import { registerJobRoutes } from './job-routes';
import { JobStore, type JobStatus } from './jobs';
import { RequestPipeline, type RequestRecord, type ResponseValidationFailure } from './request-pipeline';
import { Router } from './router';
import { SpecValidator } from './spec-validator';
import { childArmId, workspaceArmId, type WorkspaceIdentity } from './workspace';
import { registerWorkspaceRoutes } from './workspace-routes';

export type { FaultResponse, FaultRule, ActiveFault } from './faults';
export type { JobStatus } from './jobs';
export type { RequestRecord, ResponseValidationFailure } from './request-pipeline';
export { amlSpecFolder, missingSpecFiles, SpecFolderMissingError, SUPPORTED_API_VERSION } from './spec-validator';
export { jobLogPrefix, NODE_ID, processName } from './job-logs';

export interface AmlEmulatorOptions {
  /** The storage account of the workspace: an Azurite blob service, such as `startAzurite()` returns. */
  storage: StorageAccount;
  /** ARM id reported as the workspace's `keyVault`. @default a vault named `<workspace>-kv` in the resource group */
  keyVaultArmId?: string;
  /** Computes that exist in the workspace; jobs naming another compute are rejected. @default ['cpu-cluster'] */
  computeNames?: string[];
  /** Python interpreter that runs entry scripts. @default `AMLBATCH_PYTHON`, else the project's `.venv` */
  pythonExecutable?: string;
  /** Folder for job runs, the spec tree and the emulator's log. @default a new temporary folder, removed by `stop()` */
  workFolder?: string;
  /** @default '00000000-0000-4000-8000-000000000000' */
  subscriptionId?: string;
  /** @default 'amlbatch-test-rg' */
  resourceGroup?: string;
  /** @default 'amlbatch-test-ws' */
  workspaceName?: string;
  /** @default 'westeurope' */
  location?: string;
  /** Milliseconds a job stays in each status before Running (NotStarted, Queued, Preparing). @default 200 */
  statusStepDelayMs?: number;
  /** Items per page of job and asset lists; small values exercise paging. @default 20 */
  listPageSize?: number;
}

/** Where the workspace's default datastore keeps its blobs, and how to reach them. */
export interface DatastoreInfo {
  name: string;
  accountName: string;
  containerName: string;
  blobEndpoint: string;
  accountKey: string;
}

export interface AmlEmulator {
  /** `https://127.0.0.1:<port>`; pass as the client's `endpoint`. */
  endpoint: string;
  subscriptionId: string;
  resourceGroup: string;
  workspaceName: string;
  workspaceArmId: string;
  /** ARM ids of the configured computes, in the order of `computeNames`. */
  computeIds: string[];
  /** The server's self-signed certificate; pass as the client's `tlsOptions.ca`. */
  certPem: string;
  defaultDatastore: DatastoreInfo;
  /** The `workspaceartifactstore` datastore, whose container contains job logs. */
  artifactDatastore: { name: string; containerName: string };
  workFolder: string;
  /** JSON-lines log of the emulator: requests rejected, jobs started and finished, errors. */
  logFile: string;
  /** Every request received, in arrival order. */
  requests: readonly RequestRecord[];
  /** Responses that violated the spec; empty unless the emulator has a bug. */
  validationErrors: readonly ResponseValidationFailure[];
  injectFault(rule: FaultRule): ActiveFault;
  clearFaults(): void;
  /** Makes the next submitted job end Failed with `reason` in its job_result.txt, without running its script. */
  failNextJob(reason: string): void;
  /**
   * Makes the next submitted job run the listed mini-batches (0-based indexes) a second time after their first
   * success, so its append_row output has their rows twice, as Azure ML's at-least-once runtime can produce.
   * Throws for indexes that are not distinct integers of 0 or more.
   */
  repeatMiniBatchesOfNextJob(indexes: readonly number[]): void;
  /** Cancels a job as if another client had: CancelRequested, then Canceled. Throws for an unknown job. */
  cancelJobExternally(jobName: string): void;
  /** The job's current status, or undefined for an unknown job. Reads memory only, so tests may call it often. */
  jobStatus(jobName: string): JobStatus | undefined;
  /** Every status the job has had, in order; empty for an unknown job. */
  jobStatusHistory(jobName: string): JobStatus[];
  /** The container and blob prefix of a job's `logs/` folder in the artifact store. */
  jobLogLocation(jobName: string): BlobLocation;
  /** Cancels running jobs, closes the server and removes the work folder the emulator created. */
  stop(): Promise<void>;
}

/**
 * Starts the emulator and registers the workspace's two datastores, `workspaceblobstore` (the default) and
 * `workspaceartifactstore` (container `azureml`), creating their containers in the storage account.
 * Throws `SpecFolderMissingError` when the OpenAPI spec files are absent.
 */
export async function startAmlEmulator(options: AmlEmulatorOptions): Promise<AmlEmulator> {
  const ownsWorkFolder = options.workFolder === undefined;
  const workFolder = options.workFolder ?? mkdtempSync(path.join(os.tmpdir(), 'amlbatch-aml-emulator-'));
  mkdirSync(workFolder, { recursive: true });
  const workspace: WorkspaceIdentity = {
    subscriptionId: options.subscriptionId ?? '00000000-0000-4000-8000-000000000000',
    resourceGroup: options.resourceGroup ?? 'amlbatch-test-rg',
    workspaceName: options.workspaceName ?? 'amlbatch-test-ws',
    location: options.location ?? 'westeurope',
    workspaceId: randomUUID(),
  };
  const computeNames = options.computeNames ?? ['cpu-cluster'];
  const logFile = path.join(workFolder, 'emulator.log');
  const log = new DriverLog(logFile);

  const storage = new BlobStorage(options.storage);
  const datastores = new DatastoreStore(workspace, storage);
  const defaultContainer = `azureml-blobstore-${workspace.workspaceId}`;
  const artifactContainer = 'azureml';
  let validator: SpecValidator;
  try {
    validator = await SpecValidator.create(workFolder);
    await storage.ensureContainer(defaultContainer);
    await storage.ensureContainer(artifactContainer);
  } catch (error) {
    log.error('AML emulator failed to start', errorFields(error));
    log.close();
    if (ownsWorkFolder) rmSync(workFolder, { recursive: true, force: true });
    throw error;
  }
  datastores.registerBlobDatastore(DEFAULT_DATASTORE_NAME, defaultContainer, true);
  datastores.registerBlobDatastore(ARTIFACT_DATASTORE_NAME, artifactContainer, false);

  const certificate = createTestCertificate();
  const server = https.createServer({ cert: certificate.certPem, key: certificate.keyPem });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const endpoint = `https://127.0.0.1:${port}`;

  const jobs = new JobStore(workspace);
  const assets = new AssetStore(workspace);
  const executionContext: JobExecutionContext = {
    workspace,
    storage,
    datastores,
    assets,
    jobs,
    workFolder,
    pythonExecutable: options.pythonExecutable ?? defaultPythonExecutable(),
    statusStepDelayMs: options.statusStepDelayMs ?? 200,
    log,
  };
  const executor = new JobExecutor(executionContext);
  const context: EmulatorContext = {
    ...executionContext,
    executor,
    computeNames,
    keyVaultArmId:
      options.keyVaultArmId ??
      `/subscriptions/${workspace.subscriptionId}/resourceGroups/${workspace.resourceGroup}/providers/Microsoft.KeyVault/vaults/${workspace.workspaceName}-kv`,
    endpoint,
    listPageSize: options.listPageSize ?? 20,
    operations: new Map<string, TrackedOperation>(),
  };

  const router = new Router();
  registerWorkspaceRoutes(router, context);
  registerAssetRoutes(router, context);
  registerJobRoutes(router, context);
  const faults = new FaultInjector();
  const pipeline = new RequestPipeline(router, validator, faults, context, log);
  server.on('request', (incoming, outgoing) => {
    pipeline.handle(incoming, outgoing).catch((error: unknown) => {
      log.error('Request failed before a response was sent', { method: incoming.method, url: incoming.url, ...errorFields(error) });
      if (!outgoing.headersSent) outgoing.writeHead(500).end();
    });
  });
  log.info('AML emulator started', { endpoint, workspace: workspace.workspaceName, storage: storage.account.blobEndpoint, computeNames });

  const requireJob = (jobName: string) => {
    const record = jobs.get(jobName);
    if (record === undefined) throw new Error(`job ${jobName} does not exist in the emulator; submit it with jobs.createOrUpdate first`);
    return record;
  };

  return {
    endpoint,
    subscriptionId: workspace.subscriptionId,
    resourceGroup: workspace.resourceGroup,
    workspaceName: workspace.workspaceName,
    workspaceArmId: workspaceArmId(workspace),
    computeIds: computeNames.map((name) => childArmId(workspace, 'computes', name)),
    certPem: certificate.certPem,
    defaultDatastore: {
      name: DEFAULT_DATASTORE_NAME,
      accountName: storage.account.accountName,
      containerName: defaultContainer,
      blobEndpoint: storage.account.blobEndpoint,
      accountKey: storage.account.accountKey,
    },
    artifactDatastore: { name: ARTIFACT_DATASTORE_NAME, containerName: artifactContainer },
    workFolder,
    logFile,
    requests: pipeline.requests,
    validationErrors: pipeline.validationErrors,
    injectFault: (rule) => faults.add(rule),
    clearFaults: () => faults.clear(),
    failNextJob: (reason) => executor.failNextJob(reason),
    repeatMiniBatchesOfNextJob: (indexes) => executor.repeatMiniBatchesOfNextJob(indexes),
    cancelJobExternally: (jobName) => executor.cancel(requireJob(jobName), 'canceled by another client'),
    jobStatus: (jobName) => jobs.get(jobName)?.status,
    jobStatusHistory: (jobName) => [...(jobs.get(jobName)?.history ?? [])],
    jobLogLocation: (jobName) => ({ container: artifactContainer, blobPath: jobLogPrefix(jobName) }),
    stop: async () => {
      await executor.stop();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      log.info('AML emulator stopped', { endpoint });
      log.close();
      if (ownsWorkFolder) rmSync(workFolder, { recursive: true, force: true });
    },
  };
}
