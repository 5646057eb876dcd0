import { log } from '@temporalio/activity';
import { classifyFailures } from './errors';
import { selectBackend } from './backends/registry';
import type { ActivityDependencies } from './dependencies';
import type { AuthenticateResult, StageInput } from './types';

/** Stage 1: proves the worker can act on the workspace, and says as whom. */
export function createAuthenticate(deps: ActivityDependencies) {
  return async function authenticate(input: StageInput): Promise<AuthenticateResult> {
    return classifyFailures(async () => {
      const result = await selectBackend(deps.backends, input.backend).authenticate(input);
      log.info('Authenticated', { backend: input.backend, identity: result.identity, workspace: result.workspace });
      return result;
    });
  };
}
