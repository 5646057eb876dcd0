import { log } from '@temporalio/activity';
import { classifyFailures } from './errors';
import { selectBackend } from './backends/registry';
import type { ActivityDependencies } from './dependencies';
import type { CheckVaultInput, CheckVaultResult } from './types';

/** Stage 2: checks that every secret the entry script needs exists, by name; values never leave the backend. */
export function createCheckVaultAccess(deps: ActivityDependencies) {
  return async function checkVaultAccess(input: CheckVaultInput): Promise<CheckVaultResult> {
    return classifyFailures(async () => {
      const result = await selectBackend(deps.backends, input.backend).checkVaultAccess(input);
      log.info('Vault access checked', { backend: input.backend, vault: result.vault, secretNames: input.secretNames });
      return result;
    });
  };
}
