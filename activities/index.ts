import { createAuthenticate } from './authenticate';
import { createCheckVaultAccess } from './check-vault';
import { createCollectResults } from './collect-results';
import { createCancelScoringJob, createDeleteDatasetVersion, createDeleteDatastore } from './compensate';
import { createEnsureDatastore } from './ensure-datastore';
import { withHeartbeats } from './heartbeat';
import { createRegisterDataset } from './register-dataset';
import { createSelectItems } from './select-items';
import { createSubmitScoringJob } from './submit-job';
import { createWaitForJob } from './wait-for-job';
import type { ActivityDependencies } from './dependencies';

export type { ActivityDependencies } from './dependencies';

/**
 * Builds the stage and compensation activities from their dependencies. Workflows type their activity proxies
 * with `ReturnType<typeof createActivities>`, and tests pass their own backends here instead of mocking modules.
 *
 * Stages that make one call without progress to report heartbeat on a timer while it runs (`keepAlive`), so a
 * worker that dies mid-stage is noticed within the stage's `heartbeatTimeout`. The others heartbeat themselves.
 */
export function createActivities(deps: ActivityDependencies) {
  return {
    authenticate: keepAlive(createAuthenticate(deps)),
    checkVaultAccess: keepAlive(createCheckVaultAccess(deps)),
    ensureDatastore: keepAlive(createEnsureDatastore(deps)),
    registerDataset: createRegisterDataset(deps),
    selectItems: keepAlive(createSelectItems(deps)),
    submitScoringJob: keepAlive(createSubmitScoringJob(deps)),
    waitForJob: createWaitForJob(deps),
    collectResults: keepAlive(createCollectResults(deps)),
    cancelScoringJob: createCancelScoringJob(deps),
    deleteDatasetVersion: createDeleteDatasetVersion(deps),
    deleteDatastore: createDeleteDatastore(deps),
  };
}

export type BatchActivities = ReturnType<typeof createActivities>;

function keepAlive<I, O>(activity: (input: I) => Promise<O>): (input: I) => Promise<O> {
  return (input) => withHeartbeats(() => activity(input));
}
