import type { WaitOptions } from '../../activities/backends/backend';
import type { CancelJobInput, DeleteDatasetVersionInput, DeleteDatastoreInput } from '../../activities/compensation-types';
import { sleepUnlessAborted } from '../../activities/backends/common/files';
import type { SubmitJobInput, WaitForJobInput } from '../../activities/types';
import { FakeBackend } from '../support/fake-backend';

/**
 * The fake backend with switches the durability tests need: assets that existed before the batch, a job that runs
 * until a clock reports it done, and an `order` log of the undo steps in the order they ran.
 */
export class ScriptedBackend extends FakeBackend {
  readonly order: string[] = [];
  /** False makes ensureDatastore and registerDataset report assets that existed before the batch. */
  createsAssets = true;
  /**
   * When set, waitForJob polls until it resolves true, reporting a running job meanwhile. The multi-day test passes
   * a check of the test server's clock.
   */
  jobDone: (() => Promise<boolean>) | undefined;
  /** Polls of the scripted job, across all waitForJob calls. */
  polls = 0;
  /** Input of every submitScoringJob call. */
  readonly submissions: SubmitJobInput[] = [];

  override async ensureDatastore() {
    return { ...(await super.ensureDatastore()), created: this.createsAssets };
  }

  override async registerDataset(...args: Parameters<FakeBackend['registerDataset']>) {
    return { ...(await super.registerDataset(...args)), created: this.createsAssets };
  }

  // The input is optional only because FakeBackend's method takes none; the activity always passes one.
  override async submitScoringJob(input?: SubmitJobInput) {
    if (input) this.submissions.push(input);
    const job = await super.submitScoringJob();
    return { ...job, jobName: `job-fake-${input?.submission ?? 1}` };
  }

  override async waitForJob(input: WaitForJobInput, options: WaitOptions) {
    const done = this.jobDone;
    if (!done) return super.waitForJob(input, options);
    for (;;) {
      this.polls += 1;
      const progress = { miniBatchesTotal: 1, miniBatchesSucceeded: 0, miniBatchesFailed: 0, itemsTotal: this.itemCount, itemsSucceeded: 0, itemsFailed: 0 };
      if (await done()) return super.waitForJob(input, options);
      options.onPoll({ jobName: input.jobName, status: 'Running', progress });
      await sleepUnlessAborted(options.pollIntervalMs, options.signal);
    }
  }

  override async cancelScoringJob(input: CancelJobInput) {
    this.order.push('cancelScoringJob');
    return super.cancelScoringJob(input);
  }

  override async deleteDatasetVersion(input: DeleteDatasetVersionInput) {
    this.order.push('deleteDatasetVersion');
    return super.deleteDatasetVersion(input);
  }

  override async deleteDatastore(input: DeleteDatastoreInput) {
    this.order.push('deleteDatastore');
    return super.deleteDatastore(input);
  }
}
