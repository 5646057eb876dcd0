import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { finished } from 'node:stream/promises';
import type { AzureMachineLearningWorkspaces, JobBase } from '@azure/arm-machinelearning';
import { AuthenticationError, CredentialUnavailableError, AggregateAuthenticationError, type TokenCredential } from '@azure/identity';
import { RestError } from '@azure/core-rest-pipeline';
import { defaultPythonExecutable, projectRoot } from '../../../common/project-paths';
import { StageError } from '../../errors';
import { checkDatasetInput } from '../../dataset-input-checks';
import type {
  AuthenticateResult,
  AzureStageSettings,
  AzureWorkspaceRef,
  CheckVaultInput,
  CheckVaultResult,
  CollectResultsInput,
  CollectedResults,
  DatasetRef,
  DatastoreRef,
  EnsureDatastoreInput,
  JobOutcome,
  JobProgress,
  ItemSelection,
  JobRef,
  RegisterDatasetInput,
  SelectItemsInput,
  StageInput,
  SubmitJobInput,
  WaitForJobInput,
} from '../../types';
import type { ScoringBackend, WaitOptions } from '../backend';
import { checkEntryScript } from '../common/entry-script';
import { pathExists, sleepUnlessAborted } from '../common/files';
import { mergeRound } from '../common/results-rounds';
import { writeFailedItemsManifest } from '../common/selection';
import { readManifestPaths } from '../../ledger/manifest-lines';
import type { ContainerClient } from '@azure/storage-blob';
import { ARM_SCOPE, AzureClients, type AzureEndpoints, type BlobAccess } from './clients';
import { uploadCodeFolder } from './code-upload';
import { createCredential, noCredentialMessage, type CredentialKind } from './credentials';
import { COMPONENT_NAME, buildComponentSpec, buildPipelineJob, contentVersion, toAzureName } from './job-body';
import { describeJobFailure, jobLogsLocation, noResultReasonFromLogs, readJobLogTexts, summarizeJobLogs, type JobLogSummary } from './job-logs';
import { callAzure, classifyAzureError } from './rest-errors';
import { checkSecret, readSecretValue } from './vault';
import { resolveWorkspace } from './workspace-config';

/** Settings of the Azure backend, read once when the worker starts. */
export interface AzureBackendOptions {
  endpoints: AzureEndpoints;
  /** Folder on the worker that receives collected rows, one sub-folder per batch. */
  resultsRoot: string;
  /** @default the credential `AMLBATCH_AZURE_CREDENTIAL` selects, `DefaultAzureCredential` unless set */
  credential?: TokenCredential;
  /** Folder where the upward search for `.azureml/config.json` starts. @default the worker's current folder */
  configSearchFolder?: string;
  environment?: NodeJS.ProcessEnv;
  /** Milliseconds between job polls: the first wait, doubled after each poll up to the maximum. @default 2000 to 60000 */
  pollIntervalMs?: { min: number; max: number };
  /** Docker image of the job's environment when the input names none. */
  defaultImage?: string;
}

/** Statuses after which an Azure ML job changes no more. */
/** Folder of the blobs amlbatch writes into the input container: manifests, job outputs, follow-up inputs. */
const AMLBATCH_BLOB_PREFIX = 'amlbatch/';
/** Blob copies in flight at once while a follow-up job's items are copied. */
const SELECTION_COPY_CONCURRENCY = 8;
const TERMINAL_STATUSES = new Set(['Completed', 'Failed', 'Canceled']);
const DEFAULT_IMAGE = 'mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest';
const ARTIFACT_DATASTORE = 'workspaceartifactstore';
/** Characters of a job log put into a failure message; the logs themselves stay in the artifact store. */
const MAX_REASON_LENGTH = 4000;

const ROLES = {
  workspace: 'AzureML Data Scientist (or Contributor) on the Azure ML workspace',
  vault: 'Key Vault Secrets User on the Key Vault (or an access policy allowing secret get)',
  blob: 'Storage Blob Data Contributor on the storage account',
};

/**
 * The Azure Machine Learning backend: every stage through the official SDKs. Assets are content-addressed
 * (code, environment, component and data versions are hashes of their content), and the job name is derived from
 * the workflow id and submission number, so every stage can be retried without creating anything twice.
 */
export class AzureBackend implements ScoringBackend {
  readonly name = 'azure' as const;
  private readonly clients: AzureClients;
  private readonly credentialKind: CredentialKind | 'given';
  private readonly environment: NodeJS.ProcessEnv;
  private readonly pollIntervalMs: { min: number; max: number };
  private credentialError: StageError | undefined;

  constructor(private readonly options: AzureBackendOptions) {
    this.environment = options.environment ?? process.env;
    this.pollIntervalMs = options.pollIntervalMs ?? { min: 2000, max: 60_000 };
    let credential = options.credential;
    let kind: CredentialKind | 'given' = 'given';
    if (!credential) {
      try {
        ({ credential, kind } = createCredential(this.environment));
      } catch (error) {
        // A misconfigured credential fails the authenticate stage with its message instead of the worker start.
        const configurationError = error instanceof StageError ? error : new StageError('InvalidInput', (error as Error).message);
        this.credentialError = configurationError;
        credential = { getToken: () => Promise.reject(configurationError) };
      }
    }
    this.credentialKind = kind;
    this.clients = new AzureClients(credential, options.endpoints);
  }

  async authenticate(input: StageInput): Promise<AuthenticateResult> {
    const settings = requireAzure(input);
    const workspace = await resolveWorkspace(
      settings,
      this.environment,
      this.options.configSearchFolder ?? process.cwd(),
    );
    const identity = await this.acquireManagementToken();
    const aml = this.clients.machineLearning(workspace.subscriptionId);
    const found = await callAzure({ action: `read workspace ${workspace.workspaceName}`, role: ROLES.workspace }, () =>
      aml.workspaces.get(workspace.resourceGroup, workspace.workspaceName),
    );

    const keyVaultUrl = settings.keyVaultUrl ?? vaultUrlFromArmId(found.keyVault);
    if (!keyVaultUrl) {
      throw new StageError(
        'InvalidInput',
        `workspace ${workspace.workspaceName} reports no Key Vault; set azure.keyVaultUrl in the input`,
        { workspace: found.id },
      );
    }
    return {
      identity,
      workspace: found.id ?? workspaceArmId(workspace),
      azure: {
        workspace: { subscriptionId: workspace.subscriptionId, resourceGroup: workspace.resourceGroup, workspaceName: workspace.workspaceName },
        keyVaultUrl,
      },
    };
  }

  async checkVaultAccess(input: CheckVaultInput): Promise<CheckVaultResult> {
    const settings = requireAzure(input);
    const vaultUrl = requireVault(settings);
    const names = [...new Set([...input.secretNames, ...(settings.datastore.secretName ? [settings.datastore.secretName] : [])])];
    const client = this.clients.secrets(vaultUrl);
    for (const name of names) await checkSecret(client, vaultUrl, name);
    return { vault: vaultUrl, secretsChecked: names.length };
  }

  async ensureDatastore(input: EnsureDatastoreInput): Promise<DatastoreRef> {
    const settings = requireAzure(input);
    const { workspace, datastore } = { workspace: requireWorkspace(settings), datastore: settings.datastore };
    const aml = this.clients.machineLearning(workspace.subscriptionId);
    const operation = { action: `register datastore ${datastore.name}`, role: ROLES.workspace };
    const root = `${this.clients.blobEndpoint(datastore.accountName)}/${datastore.containerName}`;
    const credentialsType = { identity: 'None', account_key: 'AccountKey', sas: 'Sas' }[datastore.credential ?? 'identity'];

    const existing = await aml.datastores.get(workspace.resourceGroup, workspace.workspaceName, datastore.name).catch((error: unknown) => {
      if (error instanceof RestError && error.statusCode === 404) return undefined;
      throw classifyAzureError(error, operation);
    });
    if (existing) {
      const properties = existing.properties as unknown as Record<string, unknown>;
      const differences = [
        ['datastoreType', properties.datastoreType, 'AzureBlob'],
        ['accountName', properties.accountName, datastore.accountName],
        ['containerName', properties.containerName, datastore.containerName],
        ['credentialsType', (properties.credentials as { credentialsType?: string } | undefined)?.credentialsType, credentialsType],
      ].filter(([, actual, wanted]) => actual !== wanted);
      if (differences.length === 0) return { datastoreName: datastore.name, root, created: false };
      if (!datastore.allowUpdate) {
        const shown = differences.map(([field, actual, wanted]) => `${String(field)}: existing "${String(actual)}", requested "${String(wanted)}"`);
        throw new StageError(
          'Conflict',
          `datastore ${datastore.name} exists with different settings (${shown.join('; ')}); ` +
            'set azure.datastore.allowUpdate to replace it, or choose another datastore name',
          { datastoreName: datastore.name, differences: shown },
        );
      }
    }

    const credentials = await this.datastoreCredentials(settings);
    await callAzure(operation, () =>
      aml.datastores.createOrUpdate(workspace.resourceGroup, workspace.workspaceName, datastore.name, {
        properties: {
          datastoreType: 'AzureBlob',
          accountName: datastore.accountName,
          containerName: datastore.containerName,
          endpoint: 'core.windows.net',
          protocol: 'https',
          credentials,
          description: 'Registered by amlbatch',
          ...(credentials.credentialsType === 'None' ? { serviceDataAccessAuthIdentity: 'WorkspaceSystemAssignedIdentity' } : {}),
        } as never,
      }),
    );
    return { datastoreName: datastore.name, root, created: existing === undefined };
  }

  async registerDataset(input: RegisterDatasetInput, reportProgress: (filesListed: number) => void): Promise<DatasetRef> {
    const settings = requireAzure(input);
    const workspace = requireWorkspace(settings);
    const { datastore } = settings;
    const folder = normalizeFolder(input.inputFolder);
    const container = this.clients.container(datastore.accountName, datastore.containerName, await this.blobAccess(settings));
    const datasetName = toAzureName(`amlbatch-${datastore.name}-${folder.replace(/\/$/, '') || 'root'}`, 200);

    const scratch = await mkdtemp(path.join(os.tmpdir(), 'amlbatch-manifest-'));
    try {
      const manifestFile = path.join(scratch, 'manifest.jsonl');
      const summary = await callAzure({ action: `list ${folder || '/'} in container ${datastore.containerName}`, role: ROLES.blob }, () =>
        writeBlobManifest(container, folder, manifestFile, reportProgress),
      );
      // Before the manifest is uploaded and the data asset registered, so a batch with an input error creates neither.
      const inputWarnings = await checkDatasetInput({
        backend: 'azure',
        manifestPath: manifestFile,
        inputFolder: `${folder || '/'} in container ${datastore.containerName}`,
        checks: input.checks,
        scoringRateFolder: this.options.resultsRoot,
        temporaryFolder: scratch,
      });
      const version = summary.sha256.slice(0, 16);
      const inputRoot = `azureml://datastores/${datastore.name}/paths/${folder}`;
      const manifestBlob = `${AMLBATCH_BLOB_PREFIX}manifests/${datasetName}/${version}/manifest.jsonl`;
      const manifestLocation = `${container.url}/${manifestBlob}`;
      const base = {
        datasetName,
        version,
        manifestLocation,
        manifestSha256: summary.sha256,
        inputRoot,
        ...summary,
        ...(inputWarnings.length > 0 ? { inputWarnings } : {}),
      };
      if (summary.itemCount === 0) return { ...base, created: false };

      const blob = container.getBlockBlobClient(manifestBlob);
      if (!(await blob.exists())) await blob.uploadFile(manifestFile, { blobHTTPHeaders: { blobContentType: 'application/x-ndjson' } });

      const aml = this.clients.machineLearning(workspace.subscriptionId);
      const operation = { action: `register data asset ${datasetName}:${version}`, role: ROLES.workspace };
      const existing = await aml.dataVersions.get(workspace.resourceGroup, workspace.workspaceName, datasetName, version).catch((error: unknown) => {
        if (error instanceof RestError && error.statusCode === 404) return undefined;
        throw classifyAzureError(error, operation);
      });
      if (!existing) {
        await callAzure(operation, () =>
          aml.dataVersions.createOrUpdate(workspace.resourceGroup, workspace.workspaceName, datasetName, version, {
            properties: {
              dataType: 'uri_folder',
              dataUri: inputRoot,
              description: `Files under ${folder || '/'} of datastore ${datastore.name}, ${summary.itemCount} files`,
              tags: { manifestSha256: summary.sha256, itemCount: String(summary.itemCount) },
            },
          }),
        );
      }
      return { ...base, created: !existing };
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }

  /**
   * Copies the selected items into `amlbatch/rounds/<job name>/` of the batch's container, under their relative
   * paths, so the follow-up job's input folder contains only them and the entry script reports the same paths. The
   * copies are server-side; a retried call copies again over the same names.
   */
  async selectItems(input: SelectItemsInput): Promise<ItemSelection> {
    const settings = requireAzure(input);
    const { datastore } = settings;
    const container = this.clients.container(datastore.accountName, datastore.containerName, await this.blobAccess(settings));
    const manifestFile = await downloadManifest(container, input.dataset.manifestLocation, input.resultsFolder);
    const jobName = toAzureName(`amlbatch-${input.workflowId}-${input.submission}`);
    const selection = await writeFailedItemsManifest(input, manifestFile, jobName);

    const sourceFolder = input.dataset.inputRoot.slice(`azureml://datastores/${datastore.name}/paths/`.length);
    const targetFolder = `${AMLBATCH_BLOB_PREFIX}rounds/${jobName}/`;
    const queue = readManifestPaths(selection.manifestFile);
    const copyNext = async (): Promise<void> => {
      for (let next = await queue.next(); !next.done; next = await queue.next()) {
        const relative = next.value;
        const source = container.getBlobClient(`${sourceFolder}${relative}`);
        const target = container.getBlobClient(`${targetFolder}${relative}`);
        await callAzure({ action: `copy ${sourceFolder}${relative} to ${targetFolder}`, role: ROLES.blob }, async () => {
          const poller = await target.beginCopyFromURL(source.url, { intervalInMs: this.pollIntervalMs.min });
          await poller.pollUntilDone();
        });
      }
    };
    await Promise.all(Array.from({ length: SELECTION_COPY_CONCURRENCY }, copyNext));
    return { ...selection, inputRoot: `azureml://datastores/${datastore.name}/paths/${targetFolder}` };
  }

  async submitScoringJob(input: SubmitJobInput): Promise<JobRef> {
    const settings = requireAzure(input);
    const workspace = requireWorkspace(settings);
    const aml = this.clients.machineLearning(workspace.subscriptionId);
    const jobName = toAzureName(`amlbatch-${input.workflowId}-${input.submission}`);
    const jobOperation = { action: `submit job ${jobName}`, role: ROLES.workspace };

    // A retried submit whose first response was lost finds its job here and attaches to it.
    const existingJob = await this.getJob(aml, workspace, jobName, jobOperation);
    if (existingJob) return { jobName, attached: true };

    const codeDirectory = input.settings.codeDirectory ?? path.join(projectRoot(), 'scoring');
    await checkEntryScript(defaultPythonExecutable(), codeDirectory, input.settings.entryScript);
    const codeId = await this.registerCode(aml, workspace, codeDirectory);
    const environmentId = await this.registerEnvironment(aml, workspace, settings, codeDirectory);

    const instanceCount = settings.instanceCount ?? 1;
    // NOTE: without processCount, one process per node is a guess; Azure ML's own default is the node's core count.
    const processCount = input.settings.processCount ?? 1;
    const spec = buildComponentSpec({
      settings: input.settings,
      codeId,
      environmentId,
      instanceCount,
      processCount,
      environmentVariables: { AMLBATCH_KEY_VAULT_URL: requireVault(settings), ...(settings.environmentVariables ?? {}) },
    });
    const componentVersion = contentVersion(JSON.stringify(spec));
    const componentId = await this.ensureVersion(aml, workspace, 'component', COMPONENT_NAME, componentVersion, () =>
      aml.componentVersions.createOrUpdate(workspace.resourceGroup, workspace.workspaceName, COMPONENT_NAME, componentVersion, {
        properties: { componentSpec: { ...spec, version: componentVersion }, description: 'amlbatch parallel scoring component' },
      }),
    );

    const computeId = `${workspaceArmId(workspace)}/computes/${settings.compute}`;
    const outputUri =
      input.settings.outputAction === 'append_row'
        ? `azureml://datastores/${settings.datastore.name}/paths/${AMLBATCH_BLOB_PREFIX}outputs/${jobName}/${input.settings.appendRowFileName}`
        : undefined;
    const body = buildPipelineJob({
      displayName: `amlbatch ${input.workflowId}`,
      experimentName: settings.experimentName ?? 'amlbatch',
      tags: { amlbatch_workflow_id: input.workflowId.slice(0, 256), amlbatch_submission: String(input.submission) },
      computeId,
      componentId,
      inputUri: input.selection?.inputRoot ?? input.dataset.inputRoot,
      ...(outputUri ? { outputUri } : {}),
      settings: input.settings,
      instanceCount,
      processCount,
    });
    try {
      await aml.jobs.createOrUpdate(workspace.resourceGroup, workspace.workspaceName, jobName, { properties: body as never });
    } catch (error) {
      // A concurrent or lost first attempt may have created it; attach when it exists now.
      if (await this.getJob(aml, workspace, jobName, jobOperation)) return { jobName, attached: true };
      throw classifyAzureError(error, jobOperation);
    }
    return { jobName, attached: false };
  }

  async waitForJob(input: WaitForJobInput, options: WaitOptions): Promise<JobOutcome> {
    const settings = requireAzure(input);
    const workspace = requireWorkspace(settings);
    const aml = this.clients.machineLearning(workspace.subscriptionId);
    const operation = { action: `read job ${input.jobName}`, role: ROLES.workspace };
    const progress: JobProgress = {
      miniBatchesTotal: 0,
      miniBatchesSucceeded: 0,
      miniBatchesFailed: 0,
      itemsTotal: 0,
      itemsSucceeded: 0,
      itemsFailed: 0,
    };
    let interval = Math.min(this.pollIntervalMs.min, options.pollIntervalMs);
    for (;;) {
      // Each poll requests a token from the credential, which returns a cached one until shortly before it expires.
      const job = await callAzure(operation, () => aml.jobs.get(workspace.resourceGroup, workspace.workspaceName, input.jobName));
      const status = job.properties.status ?? 'Unknown';
      options.onPoll({ jobName: input.jobName, status, progress });

      if (status === 'Completed') return { jobName: input.jobName, status: 'Completed', progress };
      if (status === 'Failed') throw await this.jobFailedError(settings, input.jobName);
      if (status === 'Canceled') {
        throw new StageError('JobCanceled', `job ${input.jobName} was canceled outside this batch (by a person or the service)`, {
          jobName: input.jobName,
        });
      }
      // NotStarted, Starting, Provisioning, Preparing, Queued, Running, Finalizing, CancelRequested, NotResponding,
      // Paused and statuses newer than this code all mean "not finished yet".

      try {
        await sleepUnlessAborted(interval, options.signal);
      } catch (abortReason) {
        if (options.isCancelRequested()) await this.cancelJob(aml, workspace, input.jobName);
        throw abortReason;
      }
      interval = Math.min(interval * 2, this.pollIntervalMs.max);
    }
  }

  async collectResults(input: CollectResultsInput): Promise<CollectedResults> {
    const settings = requireAzure(input);
    const resultsFolder = input.resultsFolder ?? path.join(this.options.resultsRoot, toAzureName(input.workflowId));
    await mkdir(resultsFolder, { recursive: true });
    const { datastore } = settings;
    const container = this.clients.container(datastore.accountName, datastore.containerName, await this.blobAccess(settings));
    const manifestFile = await downloadManifest(container, input.dataset.manifestLocation, resultsFolder);
    // Items without a row get the job's failure reason from its logs. The logs explain, they do not decide: when the
    // artifact store cannot be read, the items are still recorded as having no result, only without a reason.
    const logs = await this.readJobLogSummary(settings, input.jobName).catch((error: unknown) => {
      if (error instanceof StageError) return undefined;
      throw error;
    });

    let destination: string | undefined;
    let rows: NodeJS.ReadableStream | undefined;
    if (input.outputAction === 'append_row') {
      destination = path.join(resultsFolder, input.appendRowFileName);
      const blobName = `${AMLBATCH_BLOB_PREFIX}outputs/${input.jobName}/${input.appendRowFileName}`;
      const blob = container.getBlobClient(blobName);
      // A job that failed or was canceled may have written no output; its items then have no row.
      const present = input.jobStatus === 'Completed' || (await callAzure({ action: `read job output ${blobName}`, role: ROLES.blob }, () => blob.exists()));
      if (present) {
        const download = await callAzure({ action: `read job output ${blobName}`, role: ROLES.blob }, () => blob.download());
        if (!download.readableStreamBody) throw new StageError('Transient', `job output ${blobName} returned no body`);
        rows = download.readableStreamBody;
      }
    }

    const merged = await mergeRound(resultsFolder, destination, {
      jobName: input.jobName,
      ...(rows ? { rows: rows as never } : {}),
      ...(logs ? { noResultReason: noResultReasonFromLogs(logs) } : {}),
    });
    return {
      resultsFolder,
      ...(destination !== undefined ? { resultsFile: destination } : {}),
      rowCount: merged.rowCount,
      failedRowCount: merged.failedRowCount,
      ...(merged.resultsSha256 !== undefined ? { resultsSha256: merged.resultsSha256 } : {}),
      manifestFile,
      rounds: merged.rounds,
    };
  }

  /** Gets a management token, turning "nothing configured" and rejected credentials into clear stage errors. */
  private async acquireManagementToken(): Promise<string> {
    if (this.credentialError) throw this.credentialError;
    try {
      const token = await this.clients.credential.getToken(ARM_SCOPE);
      if (!token) throw new CredentialUnavailableError('the credential returned no token');
      return principalOf(token.token);
    } catch (error) {
      if (error instanceof StageError) throw error;
      if (error instanceof CredentialUnavailableError || error instanceof AggregateAuthenticationError) {
        throw new StageError('InvalidInput', noCredentialMessage(this.credentialKind === 'given' ? 'default' : this.credentialKind, firstLine(error.message)));
      }
      if (error instanceof AuthenticationError) {
        const kind = error.statusCode >= 500 ? 'Transient' : 'PermissionDenied';
        throw new StageError(kind, `Azure AD rejected the credential (${error.statusCode}): ${firstLine(error.message)}`, {
          status: error.statusCode,
        });
      }
      throw new StageError('Transient', `getting an Azure token failed: ${(error as Error).message}`);
    }
  }

  private async datastoreCredentials(settings: AzureStageSettings) {
    const access = await this.blobAccess(settings);
    if (access.kind === 'account_key') {
      return { credentialsType: 'AccountKey' as const, secrets: { secretsType: 'AccountKey' as const, key: access.secret } };
    }
    if (access.kind === 'sas') return { credentialsType: 'Sas' as const, secrets: { secretsType: 'Sas' as const, sasToken: access.secret } };
    return { credentialsType: 'None' as const };
  }

  /** Opens the batch datastore's container: the key or SAS is read from Key Vault here and used only here. */
  private async blobAccess(settings: AzureStageSettings): Promise<BlobAccess> {
    const kind = settings.datastore.credential ?? 'identity';
    if (kind === 'identity') return { kind };
    const vaultUrl = requireVault(settings);
    const secret = await readSecretValue(this.clients.secrets(vaultUrl), vaultUrl, settings.datastore.secretName!);
    return { kind, secret };
  }

  /** Opens a workspace datastore (the default one or the artifact store) with the secrets the workspace keeps for it. */
  private async workspaceDatastoreContainer(aml: AzureMachineLearningWorkspaces, workspace: AzureWorkspaceRef, name?: string) {
    const operation = { action: `open datastore ${name ?? '(default)'}`, role: ROLES.workspace };
    let datastore;
    if (name) {
      datastore = await callAzure(operation, () => aml.datastores.get(workspace.resourceGroup, workspace.workspaceName, name));
    } else {
      for await (const candidate of aml.datastores.list(workspace.resourceGroup, workspace.workspaceName, { isDefault: true })) {
        datastore = candidate;
        break;
      }
      if (!datastore) throw new StageError('NotFound', `workspace ${workspace.workspaceName} has no default datastore`);
    }
    const properties = datastore.properties as unknown as { accountName: string; containerName: string };
    const datastoreName = datastore.name ?? name ?? 'workspaceblobstore';
    const secrets = await callAzure({ action: `read secrets of datastore ${datastoreName}`, role: ROLES.workspace }, () =>
      aml.datastores.listSecrets(workspace.resourceGroup, workspace.workspaceName, datastoreName),
    );
    const access: BlobAccess =
      secrets.secretsType === 'AccountKey'
        ? { kind: 'account_key', secret: (secrets as { key?: string }).key ?? '' }
        : secrets.secretsType === 'Sas'
          ? { kind: 'sas', secret: (secrets as { sasToken?: string }).sasToken ?? '' }
          : { kind: 'identity' };
    return { container: this.clients.container(properties.accountName, properties.containerName, access), datastoreName };
  }

  private async registerCode(aml: AzureMachineLearningWorkspaces, workspace: AzureWorkspaceRef, codeDirectory: string): Promise<string> {
    const { container } = await this.workspaceDatastoreContainer(aml, workspace);
    const upload = await callAzure({ action: `upload code ${codeDirectory}`, role: ROLES.blob }, () => uploadCodeFolder(container, codeDirectory));
    const name = 'amlbatch-code';
    return this.ensureVersion(aml, workspace, 'code', name, upload.hash.slice(0, 16), () =>
      aml.codeVersions.createOrUpdate(workspace.resourceGroup, workspace.workspaceName, name, upload.hash.slice(0, 16), {
        properties: { codeUri: upload.codeUri, description: `amlbatch code from ${path.basename(codeDirectory)}` },
      }),
    );
  }

  private async registerEnvironment(
    aml: AzureMachineLearningWorkspaces,
    workspace: AzureWorkspaceRef,
    settings: AzureStageSettings,
    codeDirectory: string,
  ): Promise<string> {
    const environment = settings.environment;
    if (environment && 'id' in environment) return environment.id;
    const image = environment?.image ?? this.options.defaultImage ?? DEFAULT_IMAGE;
    const condaPath = path.join(codeDirectory, environment?.condaFile ?? 'conda.yaml');
    const condaFile = await readFile(condaPath, 'utf8').catch(() => {
      throw new StageError('NotFound', `conda file ${condaPath} not found; add it or set azure.environment`, { condaFile: condaPath });
    });
    const name = 'amlbatch-env';
    const version = contentVersion(image, condaFile);
    const id = await this.ensureVersion(aml, workspace, 'environment', name, version, () =>
      aml.environmentVersions.createOrUpdate(workspace.resourceGroup, workspace.workspaceName, name, version, {
        properties: { image, condaFile, osType: 'Linux', description: 'amlbatch scoring environment' },
      }),
    );
    return `azureml:${id}`;
  }

  /** Creates an immutable asset version unless it exists; returns its ARM id either way. */
  private async ensureVersion(
    aml: AzureMachineLearningWorkspaces,
    workspace: AzureWorkspaceRef,
    kind: 'code' | 'environment' | 'component',
    name: string,
    version: string,
    create: () => Promise<{ id?: string }>,
  ): Promise<string> {
    const operation = { action: `register ${kind} ${name}:${version}`, role: ROLES.workspace };
    const operations = { code: aml.codeVersions, environment: aml.environmentVersions, component: aml.componentVersions }[kind];
    const existing = await operations.get(workspace.resourceGroup, workspace.workspaceName, name, version).catch((error: unknown) => {
      if (error instanceof RestError && error.statusCode === 404) return undefined;
      throw classifyAzureError(error, operation);
    });
    const id = existing?.id ?? (await callAzure(operation, create)).id;
    return id ?? `${workspaceArmId(workspace)}/${{ code: 'codes', environment: 'environments', component: 'components' }[kind]}/${name}/versions/${version}`;
  }

  private async getJob(
    aml: AzureMachineLearningWorkspaces,
    workspace: AzureWorkspaceRef,
    jobName: string,
    operation: { action: string; role: string },
  ): Promise<JobBase | undefined> {
    return aml.jobs.get(workspace.resourceGroup, workspace.workspaceName, jobName).catch((error: unknown) => {
      if (error instanceof RestError && error.statusCode === 404) return undefined;
      throw classifyAzureError(error, operation);
    });
  }

  /** Requests cancellation and waits, up to a bound, for the job to reach a terminal status. */
  private async cancelJob(aml: AzureMachineLearningWorkspaces, workspace: AzureWorkspaceRef, jobName: string): Promise<void> {
    const operation = { action: `cancel job ${jobName}`, role: ROLES.workspace };
    await callAzure(operation, () =>
      aml.jobs.beginCancelAndWait(workspace.resourceGroup, workspace.workspaceName, jobName, { updateIntervalInMs: this.pollIntervalMs.min }),
    );
    const deadline = Date.now() + 10 * 60_000;
    while (Date.now() < deadline) {
      const job = await callAzure(operation, () => aml.jobs.get(workspace.resourceGroup, workspace.workspaceName, jobName));
      if (TERMINAL_STATUSES.has(job.properties.status ?? '')) return;
      await new Promise((resolve) => setTimeout(resolve, this.pollIntervalMs.min));
    }
  }

  /**
   * Builds the error of a failed job from the parallel step's logs, so the failure carries the reason, the failed
   * mini-batches and their first errors instead of an exit code. Logs that cannot be read are named in the message.
   */
  private async jobFailedError(settings: AzureStageSettings, jobName: string): Promise<StageError> {
    let description: string;
    let details: Record<string, unknown>;
    try {
      const summary = await this.readJobLogSummary(settings, jobName);
      description = describeJobFailure(summary);
      details = {
        jobName,
        logs: summary.logsLocation,
        failedMiniBatches: summary.failedMiniBatches,
        failuresByErrorType: summary.failuresByErrorType,
      };
    } catch (error) {
      description = `the job's logs could not be read (${(error as Error).message}); see the job in Azure ML studio`;
      details = { jobName, logs: jobLogsLocation(ARTIFACT_DATASTORE, jobName) };
    }
    return new StageError('JobFailed', `job ${jobName} failed: ${description.slice(0, MAX_REASON_LENGTH)}`, details);
  }

  /**
   * Reads a finished job's logs from the workspace's artifact store and summarizes them: the reason, the failed
   * mini-batches by error type, their first errors and where the logs are. Missing log files are tolerated, because
   * a job that never ran has none. Throws a `StageError` when the artifact store or a log file cannot be read.
   */
  async readJobLogSummary(settings: AzureStageSettings, jobName: string): Promise<JobLogSummary> {
    const workspace = requireWorkspace(settings);
    const aml = this.clients.machineLearning(workspace.subscriptionId);
    const { container, datastoreName } = await this.workspaceDatastoreContainer(aml, workspace, ARTIFACT_DATASTORE);
    const texts = await readJobLogTexts(container, jobName, ROLES.blob);
    return summarizeJobLogs(jobName, jobLogsLocation(datastoreName, jobName), texts);
  }

  /*
   * Compensation steps: the undo of a batch that failed for good or was cancelled. Each is idempotent, because its
   * activity may run again after a crash. A job that already ended, or an asset already gone, counts as done.
   * Their parameter and result types are read from ScoringBackend, so this block needs no imports of its own.
   */

  async cancelScoringJob(
    input: Parameters<ScoringBackend['cancelScoringJob']>[0],
    options: Parameters<ScoringBackend['cancelScoringJob']>[1],
  ): ReturnType<ScoringBackend['cancelScoringJob']> {
    const settings = requireAzure(input);
    const workspace = requireWorkspace(settings);
    const aml = this.clients.machineLearning(workspace.subscriptionId);
    // submitScoringJob gives the submission's job this same name, and the two must stay in step.
    const jobName = toAzureName(`amlbatch-${input.workflowId}-${input.submission}`);
    const operation = { action: `cancel job ${jobName}`, role: ROLES.workspace };

    const job = await this.getJob(aml, workspace, jobName, operation);
    if (!job) return { jobName, outcome: 'not_found' };
    const before = job.properties.status ?? 'Unknown';
    options.onPoll(before);
    if (TERMINAL_STATUSES.has(before)) return { jobName, outcome: 'already_ended', status: before };

    // A finalizing job cannot be cancelled, and one with a cancel requested needs no second request. Both only
    // need the wait for their terminal status below.
    if (before !== 'Finalizing' && before !== 'CancelRequested') {
      try {
        await aml.jobs.beginCancelAndWait(workspace.resourceGroup, workspace.workspaceName, jobName, {
          updateIntervalInMs: this.pollIntervalMs.min,
        });
      } catch (error) {
        // The job may have moved on since it was read, so a refusal is fine when it finished or is finishing now.
        const now = (await this.getJob(aml, workspace, jobName, operation))?.properties.status;
        if (now === undefined) return { jobName, outcome: 'not_found' };
        if (!TERMINAL_STATUSES.has(now) && now !== 'Finalizing' && now !== 'CancelRequested') throw classifyAzureError(error, operation);
      }
    }

    let interval = this.pollIntervalMs.min;
    for (;;) {
      const current = await callAzure(operation, () => aml.jobs.get(workspace.resourceGroup, workspace.workspaceName, jobName));
      const status = current.properties.status ?? 'Unknown';
      options.onPoll(status);
      if (TERMINAL_STATUSES.has(status)) return { jobName, outcome: status === 'Canceled' ? 'canceled' : 'already_ended', status };
      await new Promise((resolve) => setTimeout(resolve, interval));
      interval = Math.min(interval * 2, this.pollIntervalMs.max);
    }
  }

  async deleteDatasetVersion(
    input: Parameters<ScoringBackend['deleteDatasetVersion']>[0],
  ): ReturnType<ScoringBackend['deleteDatasetVersion']> {
    const workspace = requireWorkspace(requireAzure(input));
    const aml = this.clients.machineLearning(workspace.subscriptionId);
    const operation = { action: `delete data asset ${input.datasetName}:${input.version}`, role: ROLES.workspace };
    const existing = await aml.dataVersions
      .get(workspace.resourceGroup, workspace.workspaceName, input.datasetName, input.version)
      .catch((error: unknown) => {
        if (error instanceof RestError && error.statusCode === 404) return undefined;
        throw classifyAzureError(error, operation);
      });
    if (!existing) return { deleted: false };
    // NOTE: the manifest blob under amlbatch/manifests/ stays. It is small, and a later registration of the same
    // content reuses it.
    await callAzure(operation, () =>
      aml.dataVersions.delete(workspace.resourceGroup, workspace.workspaceName, input.datasetName, input.version),
    );
    return { deleted: true };
  }

  async deleteDatastore(input: Parameters<ScoringBackend['deleteDatastore']>[0]): ReturnType<ScoringBackend['deleteDatastore']> {
    const workspace = requireWorkspace(requireAzure(input));
    const aml = this.clients.machineLearning(workspace.subscriptionId);
    const operation = { action: `delete datastore ${input.datastoreName}`, role: ROLES.workspace };
    const existing = await aml.datastores.get(workspace.resourceGroup, workspace.workspaceName, input.datastoreName).catch((error: unknown) => {
      if (error instanceof RestError && error.statusCode === 404) return undefined;
      throw classifyAzureError(error, operation);
    });
    if (!existing) return { deleted: false };
    await callAzure(operation, () => aml.datastores.delete(workspace.resourceGroup, workspace.workspaceName, input.datastoreName));
    return { deleted: true };
  }
}

/** Copies the dataset's manifest from its blob next to the results once, for the item ledger; returns its path. */
async function downloadManifest(container: ContainerClient, manifestLocation: string, resultsFolder: string): Promise<string> {
  const destination = path.join(resultsFolder, 'manifest.jsonl');
  if (await pathExists(destination)) return destination;
  const prefix = `${container.url}/`;
  if (!manifestLocation.startsWith(prefix)) {
    throw new StageError('InvalidInput', `manifest ${manifestLocation} is not in container ${container.url}; register the dataset again`);
  }
  const draft = `${destination}.${process.pid}.tmp`;
  await callAzure({ action: `read manifest ${manifestLocation}`, role: ROLES.blob }, () =>
    container.getBlobClient(decodeURIComponent(manifestLocation.slice(prefix.length))).downloadToFile(draft),
  );
  await rename(draft, destination);
  return destination;
}

/** Lists the blobs under `folder` page by page into a JSON Lines manifest, hashing as it writes. */
async function writeBlobManifest(
  container: ReturnType<AzureClients['container']>,
  folder: string,
  destination: string,
  reportProgress: (filesListed: number) => void,
): Promise<{ itemCount: number; totalBytes: number; sha256: string }> {
  const out = createWriteStream(destination, { flags: 'wx' });
  const hash = createHash('sha256');
  let itemCount = 0;
  let totalBytes = 0;
  try {
    for await (const page of container.listBlobsFlat({ prefix: folder, includeMetadata: true }).byPage({ maxPageSize: 5000 })) {
      for (const blob of page.segment.blobItems) {
        const relative = blob.name.slice(folder.length);
        // Folder markers of hierarchical namespaces are not files.
        if (relative === '' || relative.endsWith('/') || blob.metadata?.hdi_isfolder === 'true') continue;
        const line = `${JSON.stringify({ path: relative, size: blob.properties.contentLength ?? 0 })}\n`;
        hash.update(line);
        if (!out.write(line)) await new Promise<void>((resolve) => out.once('drain', resolve));
        itemCount += 1;
        totalBytes += blob.properties.contentLength ?? 0;
      }
      reportProgress(itemCount);
    }
  } finally {
    out.end();
    await finished(out);
  }
  return { itemCount, totalBytes, sha256: hash.digest('hex') };
}

function requireAzure(input: StageInput): AzureStageSettings {
  if (!input.azure) {
    throw new StageError('InvalidInput', 'backend "azure" needs the "azure" settings in the input (compute and datastore at least)');
  }
  return input.azure;
}

function requireWorkspace(settings: AzureStageSettings): AzureWorkspaceRef {
  if (!settings.workspace) throw new StageError('InvalidInput', 'the Azure workspace is not resolved; the authenticate stage must run first');
  return settings.workspace;
}

function requireVault(settings: AzureStageSettings): string {
  if (!settings.keyVaultUrl) throw new StageError('InvalidInput', 'no Key Vault URL resolved; set azure.keyVaultUrl or let authenticate read the workspace');
  return settings.keyVaultUrl;
}

function workspaceArmId(workspace: AzureWorkspaceRef): string {
  return (
    `/subscriptions/${workspace.subscriptionId}/resourceGroups/${workspace.resourceGroup}` +
    `/providers/Microsoft.MachineLearningServices/workspaces/${workspace.workspaceName}`
  );
}

/** Turns a Key Vault ARM id into its URL in Azure's public cloud. */
function vaultUrlFromArmId(armId: string | undefined): string | undefined {
  const name = armId?.split('/').pop();
  return name ? `https://${name}.vault.azure.net` : undefined;
}

/** Names the principal a token was issued to, from its unverified claims; only for logs and the summary. */
function principalOf(token: string): string {
  const payload = token.split('.')[1];
  if (!payload) return 'unknown principal';
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
    const name = claims.upn ?? claims.unique_name ?? claims.appid ?? claims.azp ?? claims.oid;
    return typeof name === 'string' ? name : 'unknown principal';
  } catch {
    return 'unknown principal';
  }
}

function normalizeFolder(folder: string): string {
  const trimmed = folder.replace(/^\/+/, '').replace(/\/+$/, '');
  return trimmed === '' ? '' : `${trimmed}/`;
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? '';
}
