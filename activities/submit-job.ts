import { log } from '@temporalio/activity';
import { classifyFailures } from './errors';
import { selectBackend } from './backends/registry';
import type { ActivityDependencies } from './dependencies';
import type { JobRef, SubmitJobInput } from './types';

/**
 * Stage 5: starts the parallel scoring job. The job name is derived from the workflow id and the submission number,
 * so a submit retried after a lost response attaches to the job it already started.
 */
export function createSubmitScoringJob(deps: ActivityDependencies) {
  return async function submitScoringJob(input: SubmitJobInput): Promise<JobRef> {
    return classifyFailures(async () => {
      const job = await selectBackend(deps.backends, input.backend).submitScoringJob(input);
      log.info('Scoring job submitted', { backend: input.backend, jobName: job.jobName, attached: job.attached });
      return job;
    });
  };
}
