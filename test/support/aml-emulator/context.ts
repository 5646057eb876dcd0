/**
 * State shared by the emulator's route handlers.
 */
import type { AssetStore } from './asset-store';
import type { JobExecutionContext, JobExecutor } from './job-execution';
import type { JobRecord } from './jobs';

/** A long-running operation that a `Location` header points to. */
export interface TrackedOperation {
  kind: 'cancel' | 'delete';
  job: JobRecord;
}

export interface EmulatorContext extends JobExecutionContext {
  assets: AssetStore;
  executor: JobExecutor;
  /** Names of the computes that exist in the workspace. */
  computeNames: string[];
  keyVaultArmId: string;
  /** `https://127.0.0.1:<port>`, the origin of `Location` and `nextLink` URLs. */
  endpoint: string;
  /** Items per page of the job and asset lists; datastore lists use their `count` parameter. */
  listPageSize: number;
  operations: Map<string, TrackedOperation>;
}

/** The ARM path template of the emulated workspace; route templates append to it. */
export const WORKSPACE_TEMPLATE =
  '/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/workspaces/{workspaceName}';

/** Resource names on PUT, as the spec's path parameters define them. */
export const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$/;
