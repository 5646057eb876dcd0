import { createAuthenticate } from './authenticate';
import { createCheckVaultAccess } from './check-vault';
import { createCollectResults } from './collect-results';
import { createEnsureDatastore } from './ensure-datastore';
import { createRegisterDataset } from './register-dataset';
import { createSubmitScoringJob } from './submit-job';
import { createWaitForJob } from './wait-for-job';
import type { ActivityDependencies } from './dependencies';

export type { ActivityDependencies } from './dependencies';

/**
 * Builds the stage activities from their dependencies. Workflows type their activity proxies with
 * `ReturnType<typeof createActivities>`, and tests pass their own backends here instead of mocking modules.
 */
export function createActivities(deps: ActivityDependencies) {
  return {
    authenticate: createAuthenticate(deps),
    checkVaultAccess: createCheckVaultAccess(deps),
    ensureDatastore: createEnsureDatastore(deps),
    registerDataset: createRegisterDataset(deps),
    submitScoringJob: createSubmitScoringJob(deps),
    waitForJob: createWaitForJob(deps),
    collectResults: createCollectResults(deps),
  };
}

export type BatchActivities = ReturnType<typeof createActivities>;
