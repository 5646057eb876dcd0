import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { log } from '@temporalio/activity';
import { defaultPythonExecutable, projectRoot } from '../../../common/project-paths';
import type {
  CancelJobInput,
  CancelJobResult,
  DeleteAssetResult,
  DeleteDatasetVersionInput,
  DeleteDatastoreInput,
} from '../../compensation-types';
import { StageError } from '../../errors';
import { checkDatasetInput } from '../../dataset-input-checks';
import type {
  AuthenticateResult,
  CheckVaultInput,
  CheckVaultResult,
  CollectResultsInput,
  CollectedResults,
  DatasetRef,
  DatastoreRef,
  EnsureDatastoreInput,
  JobOutcome,
  ItemSelection,
  JobRef,
  RegisterDatasetInput,
  SelectItemsInput,
  SubmitJobInput,
  WaitForJobInput,
} from '../../types';
import type { CancelOptions, ScoringBackend, WaitOptions } from '../backend';
import { checkEntryScript } from '../common/entry-script';
import { pathExists, sleepUnlessAborted } from '../common/files';
import { mergeRound, readResultsRounds } from '../common/results-rounds';
import { writeFailedItemsManifest } from '../common/selection';
import { temporarySibling, writeManifest } from './manifest';
import { cancelLocalJob, isLocalJobDriverAlive, readLocalJobStatus, startLocalJob } from './runner/local-job';
import type { LocalJobFaults, LocalJobSpec, LocalJobState, LocalJobStatus } from './runner/job-spec';
import { faultsProblem } from './runner/validate-spec';
import { writeFailureRecordsFromJournal } from '../../ledger/failure-records';
import { recordLocalJobScoringRate } from '../../ledger/scoring-rate';
import { LocalSecretSource } from './secret-source';
import { LocalWorkspace } from './workspace';

/** Settings of the local backend, read once when the worker starts. */
export interface LocalBackendOptions {
  /** Folder holding datastores, datasets, jobs and results. */
  workspaceDir: string;
  /** JSON secrets file for the local secret source; its path (never its content) is passed to the entry script. */
  secretsFile: string;
  /** Python interpreter for the entry script. @default `AMLBATCH_PYTHON`, else the project's `.venv/bin/python` */
  pythonExecutable?: string;
  /** Worker processes when the input sets no `processCount`. @default the number of CPU cores */
  defaultProcessCount?: number;
  /**
   * Fault injection for tests: every job this backend submits carries these faults in its spec, such as
   * `repeatMiniBatches`, which appends some mini-batches' rows twice as Azure ML can. @default no faults
   */
  faults?: LocalJobFaults;
}

/**
 * Seconds without a status update after which a job whose driver process is gone counts as crashed and is
 * restarted. The driver rewrites its status at least every second, so 10 s leaves room for a loaded machine.
 */
const DRIVER_STALE_AFTER_MS = 10_000;

/**
 * The embedded default backend: everything happens on the worker's machine. A datastore is a registered local root
 * folder, a dataset version is an immutable manifest of it, and a job is a detached job driver process running the
 * entry script with Azure ML parallel-run semantics.
 */
export class LocalBackend implements ScoringBackend {
  readonly name = 'local' as const;
  private readonly workspace: LocalWorkspace;
  private readonly secrets: LocalSecretSource;
  private readonly pythonExecutable: string;
  private readonly defaultProcessCount: number;
  private readonly faults: LocalJobFaults | undefined;

  constructor(options: LocalBackendOptions) {
    this.workspace = new LocalWorkspace(options.workspaceDir);
    this.secrets = new LocalSecretSource(options.secretsFile);
    this.pythonExecutable = options.pythonExecutable ?? defaultPythonExecutable();
    this.defaultProcessCount = options.defaultProcessCount ?? os.availableParallelism();
    if (options.faults !== undefined) {
      const problem = faultsProblem(options.faults);
      if (problem !== undefined) throw new TypeError(`LocalBackendOptions.faults is invalid: expected ${problem}`);
    }
    // A copy, so a caller that changes its options object later does not change the jobs submitted afterwards.
    this.faults = options.faults === undefined ? undefined : structuredClone(options.faults);
  }

  async authenticate(): Promise<AuthenticateResult> {
    await this.workspace.ensureWritable();
    return { identity: `${os.userInfo().username}@${os.hostname()}`, workspace: this.workspace.root };
  }

  async checkVaultAccess(input: CheckVaultInput): Promise<CheckVaultResult> {
    const missing = await this.secrets.findMissing(input.secretNames);
    if (missing.length > 0) {
      const where = missing.map((name) => `${LocalSecretSource.environmentVariableFor(name)}`).join(', ');
      throw new StageError(
        'NotFound',
        `secret ${missing.map((name) => `"${name}"`).join(', ')} not found in the local secret source: ` +
          `add it to ${this.secrets.secretsFile} (a JSON object of name to value) or set ${where}`,
        { missing, vault: this.secrets.secretsFile },
      );
    }
    return { vault: this.secrets.secretsFile, secretsChecked: input.secretNames.length };
  }

  async ensureDatastore(input: EnsureDatastoreInput): Promise<DatastoreRef> {
    const root = path.resolve(input.inputFolder);
    const info = await stat(root).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') {
        throw new StageError('NotFound', `input folder ${root} does not exist; check inputFolder`, { inputFolder: root });
      }
      throw error;
    });
    if (!info.isDirectory()) {
      throw new StageError('InvalidInput', `inputFolder ${root} is a file, not a folder; give the folder that contains the files`, {
        inputFolder: root,
      });
    }
    return this.workspace.registerDatastore(root);
  }

  async registerDataset(input: RegisterDatasetInput, reportProgress: (filesListed: number) => void): Promise<DatasetRef> {
    const root = input.datastore.root;
    const datasetName = LocalWorkspace.datasetNameFor(root);
    const datasetDir = this.workspace.datasetDir(datasetName);
    await mkdir(datasetDir, { recursive: true });

    const draft = temporarySibling(path.join(datasetDir, 'manifest.jsonl'));
    try {
      const summary = await writeManifest(root, draft, reportProgress);
      const inputWarnings = await checkDatasetInput({
        backend: 'local',
        manifestPath: draft,
        inputFolder: root,
        checks: input.checks,
        scoringRateFolder: this.workspace.root,
      });
      const version = summary.sha256.slice(0, 16);
      const versionDir = path.join(datasetDir, version);
      const manifestPath = path.join(versionDir, 'manifest.jsonl');

      // A version is immutable: the same content hashes to the same version, so an existing one is reused as is.
      const created = !(await pathExists(manifestPath));
      if (created) {
        await mkdir(versionDir, { recursive: true });
        await writeFile(
          path.join(versionDir, 'asset.json'),
          `${JSON.stringify({ name: datasetName, version, type: 'uri_folder', path: root, ...summary }, null, 2)}\n`,
        );
        await rename(draft, manifestPath);
      }
      return {
        datasetName,
        version,
        manifestLocation: manifestPath,
        manifestSha256: summary.sha256,
        itemCount: summary.itemCount,
        totalBytes: summary.totalBytes,
        inputRoot: root,
        created,
        ...(inputWarnings.length > 0 ? { inputWarnings } : {}),
      };
    } finally {
      await rm(draft, { force: true });
    }
  }

  async selectItems(input: SelectItemsInput): Promise<ItemSelection> {
    const jobName = LocalWorkspace.jobNameFor(input.workflowId, input.submission);
    // The selected items stay where they are: the job reads the selection's manifest against the dataset's folder.
    const selection = await writeFailedItemsManifest(input, input.dataset.manifestLocation, jobName);
    return { ...selection, inputRoot: input.dataset.inputRoot };
  }

  async submitScoringJob(input: SubmitJobInput): Promise<JobRef> {
    const jobName = LocalWorkspace.jobNameFor(input.workflowId, input.submission);
    const jobFolder = this.workspace.jobDir(jobName);
    const codeDirectory = input.settings.codeDirectory ?? path.join(projectRoot(), 'scoring');
    await checkEntryScript(this.pythonExecutable, codeDirectory, input.settings.entryScript);

    const spec: LocalJobSpec = {
      jobName,
      manifestPath: input.selection?.manifestFile ?? input.dataset.manifestLocation,
      inputRoot: input.selection?.inputRoot ?? input.dataset.inputRoot,
      codeDirectory,
      entryScript: input.settings.entryScript,
      programArguments: input.settings.programArguments,
      miniBatchSize: input.settings.miniBatchSize,
      processCount: input.settings.processCount ?? this.defaultProcessCount,
      runInvocationTimeout: input.settings.runInvocationTimeout,
      maxRetries: input.settings.maxRetries,
      errorThreshold: input.settings.errorThreshold,
      miniBatchErrorThreshold: input.settings.miniBatchErrorThreshold,
      outputAction: input.settings.outputAction,
      appendRowFileName: input.settings.appendRowFileName,
      pythonExecutable: this.pythonExecutable,
      environment: { AMLBATCH_SECRETS_FILE: this.secrets.secretsFile },
      ...(this.faults === undefined ? {} : { faults: this.faults }),
    };
    const attached = await pathExists(path.join(jobFolder, 'job.json'));
    await startLocalJob(jobFolder, spec);
    return { jobName, attached };
  }

  async waitForJob(input: WaitForJobInput, options: WaitOptions): Promise<JobOutcome> {
    const jobFolder = this.workspace.jobDir(input.jobName);
    for (;;) {
      const status = await readLocalJobStatus(jobFolder);
      options.onPoll({ jobName: input.jobName, status: status.state, progress: status.progress });

      if (status.state === 'Completed') {
        // The rate lets the next batch's input checks warn about files too large for runInvocationTimeout.
        await recordLocalJobScoringRate(this.workspace.root, jobFolder);
        return { jobName: input.jobName, status: 'Completed', progress: status.progress };
      }
      if (status.state === 'Failed') throw jobFailedError(status);
      if (status.state === 'Canceled') {
        throw new StageError('JobCanceled', `job ${input.jobName} was canceled outside this batch`, { jobName: input.jobName });
      }
      if (this.isCrashed(status) && !(await isLocalJobDriverAlive(jobFolder))) {
        // The driver died with the machine or was killed; a new one resumes from its journal without redoing work.
        const spec = JSON.parse(await readFile(path.join(jobFolder, 'job.json'), 'utf8')) as LocalJobSpec;
        log.warn('Local job driver restarted', { jobName: input.jobName, lastStatusAt: status.updatedAt, jobFolder });
        await startLocalJob(jobFolder, spec);
      }

      try {
        await sleepUnlessAborted(options.pollIntervalMs, options.signal);
      } catch (abortReason) {
        if (options.isCancelRequested()) await cancelLocalJob(jobFolder);
        throw abortReason;
      }
    }
  }

  async collectResults(input: CollectResultsInput): Promise<CollectedResults> {
    const resultsFolder = input.resultsFolder ?? this.workspace.resultsDir(input.workflowId);
    await mkdir(resultsFolder, { recursive: true });
    const jobFolder = this.workspace.jobDir(input.jobName);
    const earlier = await readResultsRounds(resultsFolder);
    const first = earlier.length === 0 || earlier[0]?.jobName === input.jobName;
    const failureRecordsFile = await this.writeFailureRecords(
      jobFolder,
      path.join(resultsFolder, first ? 'failure-records.jsonl' : `failure-records.${input.jobName}.jsonl`),
    );

    let destination: string | undefined;
    let rows: Readable | undefined;
    if (input.outputAction === 'append_row') {
      destination = path.join(resultsFolder, input.appendRowFileName);
      const source = path.join(jobFolder, 'outputs', input.appendRowFileName);
      if (await pathExists(source)) {
        rows = createReadStream(source);
      } else if (input.jobStatus === 'Completed') {
        throw new StageError('NotFound', `job ${input.jobName} has no output file ${source}; the job wrote no rows`, {
          jobName: input.jobName,
        });
      }
      await removeStaleDrafts(destination);
    }

    const merged = await mergeRound(resultsFolder, destination, { jobName: input.jobName, ...(rows ? { rows } : {}), failureRecordsFile });
    return {
      resultsFolder,
      ...(destination !== undefined ? { resultsFile: destination } : {}),
      rowCount: merged.rowCount,
      failedRowCount: merged.failedRowCount,
      ...(merged.resultsSha256 !== undefined ? { resultsSha256: merged.resultsSha256 } : {}),
      manifestFile: input.dataset.manifestLocation,
      rounds: merged.rounds,
    };
  }

  async cancelScoringJob(input: CancelJobInput, options: CancelOptions): Promise<CancelJobResult> {
    const jobName = LocalWorkspace.jobNameFor(input.workflowId, input.submission);
    const jobFolder = this.workspace.jobDir(jobName);
    if (!(await pathExists(path.join(jobFolder, 'job.json')))) return { jobName, outcome: 'not_found' };

    const before = await readLocalJobStatus(jobFolder);
    options.onPoll(before.state);
    if (isTerminalState(before.state)) return { jobName, outcome: 'already_ended', status: before.state };

    for (;;) {
      // Stops the driver and its Python processes, then waits up to 30 s for the driver to write a terminal status.
      await cancelLocalJob(jobFolder);
      const after = await readLocalJobStatus(jobFolder);
      options.onPoll(after.state);
      if (isTerminalState(after.state)) {
        // A job that completed or failed while the cancel was on its way ended by itself.
        return { jobName, outcome: after.state === 'Canceled' ? 'canceled' : 'already_ended', status: after.state };
      }
    }
  }

  async deleteDatasetVersion(input: DeleteDatasetVersionInput): Promise<DeleteAssetResult> {
    requirePlainName(input.datasetName, 'datasetName');
    requirePlainName(input.version, 'version');
    const datasetDir = this.workspace.datasetDir(input.datasetName);
    const versionDir = path.join(datasetDir, input.version);
    if (!(await pathExists(versionDir))) return { deleted: false };

    await rm(versionDir, { recursive: true, force: true });
    // The dataset's folder goes too once its last version is gone; drafts of a running registration keep it.
    await rmdir(datasetDir).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST' && error.code !== 'ENOENT') throw error;
    });
    return { deleted: true };
  }

  async deleteDatastore(input: DeleteDatastoreInput): Promise<DeleteAssetResult> {
    requirePlainName(input.datastoreName, 'datastoreName');
    return { deleted: await this.workspace.removeDatastore(input.datastoreName, input.root) };
  }

  /**
   * Writes one failure record per item of each mini-batch the job's journal records as failed, into `destination`
   * once, for the item ledger. Mini-batches are read against the job's own manifest, which for a follow-up job
   * lists only the items it was given.
   */
  private async writeFailureRecords(jobFolder: string, destination: string): Promise<string> {
    if (await pathExists(destination)) return destination;
    const spec = JSON.parse(await readFile(path.join(jobFolder, 'job.json'), 'utf8')) as LocalJobSpec;
    const draft = temporarySibling(destination);
    try {
      await writeFailureRecordsFromJournal({
        journalPath: path.join(jobFolder, 'journal.jsonl'),
        manifestPath: spec.manifestPath,
        miniBatchSize: spec.miniBatchSize,
        destination: draft,
      });
      await rename(draft, destination);
    } finally {
      await rm(draft, { force: true });
    }
    return destination;
  }

  private isCrashed(status: LocalJobStatus): boolean {
    return Date.now() - Date.parse(status.updatedAt) > DRIVER_STALE_AFTER_MS;
  }
}

function isTerminalState(state: LocalJobState): boolean {
  return state === 'Completed' || state === 'Failed' || state === 'Canceled';
}

/** Rejects asset names that could point outside the workspace, such as `..` or names with a `/`. */
function requirePlainName(name: string, field: string): void {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(name)) {
    throw new StageError('InvalidInput', `${field} "${name}" is not a local asset name; expected letters, digits, "_", "." and "-"`, {
      [field]: name,
    });
  }
}

/**
 * Deletes drafts of `destination` that a crashed collect left behind (`.<name>.<uuid>.tmp` beside it), so a retried
 * collect leaves only the results file in the results folder.
 */
async function removeStaleDrafts(destination: string): Promise<void> {
  const folder = path.dirname(destination);
  const prefix = `.${path.basename(destination)}.`;
  for (const name of await readdir(folder)) {
    if (name.startsWith(prefix) && name.endsWith('.tmp')) await rm(path.join(folder, name), { force: true });
  }
}

function jobFailedError(status: LocalJobStatus): StageError {
  const reason = status.error?.message ?? 'the job driver reported no reason';
  const { itemsFailed, miniBatchesFailed } = status.progress;
  return new StageError('JobFailed', `job ${status.jobName} failed: ${reason}`, {
    jobName: status.jobName,
    itemsFailed,
    miniBatchesFailed,
    ...(status.error?.traceback ? { traceback: status.error.traceback } : {}),
  });
}

