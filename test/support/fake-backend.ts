import type { ScoringBackend, WaitOptions } from '../../activities/backends/backend';
import type { CancelJobInput, DeleteDatasetVersionInput, DeleteDatastoreInput } from '../../activities/compensation-types';
import type { CollectedResults, DatasetRef, JobProgress, LedgerSummary } from '../../activities/types';

export type StageMethod = Exclude<keyof ScoringBackend, 'name'>;

/**
 * An in-memory backend for workflow tests: every stage and undo step succeeds with small fixed results unless a test
 * sets `failures[method]` to a list of errors to throw, one per call, before succeeding. `calls` counts each
 * method's calls and `inputs` keeps the input of each call.
 */
export class FakeBackend implements ScoringBackend {
  readonly name = 'local' as const;
  readonly calls: Record<StageMethod, number> = {
    authenticate: 0,
    checkVaultAccess: 0,
    ensureDatastore: 0,
    registerDataset: 0,
    selectItems: 0,
    submitScoringJob: 0,
    waitForJob: 0,
    collectResults: 0,
    cancelScoringJob: 0,
    deleteDatasetVersion: 0,
    deleteDatastore: 0,
  };
  readonly inputs: Partial<Record<StageMethod, unknown[]>> = {};
  readonly failures: Partial<Record<StageMethod, Error[]>> = {};
  itemCount = 3;
  /**
   * Failed items that each collect reports in its item ledger, one entry per call; without an entry the collect
   * builds no ledger. Lets a workflow test drive follow-up rounds.
   */
  failedItemsPerCollect: number[] = [];

  private async enter(stage: StageMethod, input?: unknown): Promise<void> {
    this.calls[stage] += 1;
    (this.inputs[stage] ??= []).push(input);
    const next = this.failures[stage]?.shift();
    if (next) throw next;
    return Promise.resolve();
  }

  async authenticate() {
    await this.enter('authenticate');
    return { identity: 'tester@host', workspace: '/fake' };
  }

  async checkVaultAccess() {
    await this.enter('checkVaultAccess');
    return { vault: '/fake/secrets.json', secretsChecked: 1 };
  }

  async ensureDatastore() {
    await this.enter('ensureDatastore');
    return { datastoreName: 'local_fake', root: '/fake/data', created: true };
  }

  async registerDataset(): Promise<DatasetRef> {
    await this.enter('registerDataset');
    return {
      datasetName: 'data-fake',
      version: 'v1',
      manifestLocation: '/fake/manifest.jsonl',
      manifestSha256: 'ab'.repeat(32),
      itemCount: this.itemCount,
      totalBytes: 30,
      inputRoot: '/fake/data',
      created: true,
    };
  }

  async selectItems() {
    await this.enter('selectItems');
    return {
      kind: 'failed_items' as const,
      manifestFile: '/fake/selection.jsonl',
      inputRoot: '/fake/data',
      itemCount: 1,
      totalBytes: 3,
      manifestSha256: 'fake-selection',
    };
  }

  async submitScoringJob() {
    await this.enter('submitScoringJob');
    return { jobName: 'job-fake-1', attached: false };
  }

  async waitForJob(_input: unknown, options: WaitOptions) {
    await this.enter('waitForJob');
    const progress = this.progress();
    options.onPoll({ jobName: 'job-fake-1', status: 'Completed', progress });
    return { jobName: 'job-fake-1', status: 'Completed' as const, progress };
  }

  async collectResults(): Promise<CollectedResults> {
    await this.enter('collectResults');
    const failed = this.failedItemsPerCollect.shift();
    const ledger: LedgerSummary | undefined =
      failed === undefined
        ? undefined
        : {
            ledgerFile: '/fake/results/ledger.jsonl',
            scored: this.itemCount - failed,
            failed,
            excluded: 0,
            duplicateRows: 0,
            unknownRows: 0,
            failedByReason: failed > 0 ? { 'row_error ValueError': failed } : {},
            failureExamples: [],
          };
    return {
      resultsFolder: '/fake/results',
      resultsFile: '/fake/results/rows.txt',
      rowCount: this.itemCount,
      failedRowCount: 0,
      ...(ledger ? { ledger } : {}),
    };
  }

  async cancelScoringJob(input: CancelJobInput) {
    await this.enter('cancelScoringJob', input);
    return { jobName: `job-fake-${input.submission}`, outcome: 'already_ended' as const, status: 'Completed' };
  }

  async deleteDatasetVersion(input: DeleteDatasetVersionInput) {
    await this.enter('deleteDatasetVersion', input);
    return { deleted: true };
  }

  async deleteDatastore(input: DeleteDatastoreInput) {
    await this.enter('deleteDatastore', input);
    return { deleted: true };
  }

  private progress(): JobProgress {
    return {
      miniBatchesTotal: 1,
      miniBatchesSucceeded: 1,
      miniBatchesFailed: 0,
      itemsTotal: this.itemCount,
      itemsSucceeded: this.itemCount,
      itemsFailed: 0,
    };
  }
}
