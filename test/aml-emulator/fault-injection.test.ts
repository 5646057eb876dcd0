/**
 * Faults that the AML emulator injects, and how the real client's retry policy meets them: throttling with
 * Retry-After, server errors, authentication and authorization failures, and responses lost after processing.
 */
import type { RestError } from '@azure/core-rest-pipeline';
import { describeWithSpec, pipelineJobBody, registerScoringAssets, startHarness, stopHarness, type Harness } from './emulator-harness';

async function restError(action: () => Promise<unknown>): Promise<RestError> {
  try {
    await action();
  } catch (error) {
    return error as RestError;
  }
  throw new Error('expected the call to fail with a RestError, but it succeeded');
}

describeWithSpec('AML emulator fault injection', () => {
  let harness: Harness;
  let rg: string;
  let ws: string;
  let componentId: string;

  beforeAll(async () => {
    harness = await startHarness();
    rg = harness.resourceGroup;
    ws = harness.workspace;
    ({ componentId } = await registerScoringAssets(harness, { code: 'fault-code', component: 'fault-score', version: '1', codeBlobPrefix: 'LocalUpload/00/none' }));
  });

  afterAll(async () => {
    await stopHarness(harness);
  });

  afterEach(() => {
    harness.emulator.clearFaults();
    expect(harness.emulator.validationErrors).toEqual([]);
  });

  const requestsSince = (start: number, pathPattern: RegExp) => harness.emulator.requests.slice(start).filter((request) => pathPattern.test(request.path));

  test('throttled request is retried after Retry-After', async () => {
    const fault = harness.emulator.injectFault({ method: 'GET', path: /\/workspaces\/[^/]+$/, response: { kind: 'throttle', retryAfterSeconds: 1 } });
    const start = harness.emulator.requests.length;

    const workspace = await harness.client.workspaces.get(rg, ws);

    const [throttled, retried] = requestsSince(start, /\/workspaces\/[^/]+$/);
    expect(workspace.name).toBe(ws);
    expect(fault.remaining).toBe(0);
    expect(throttled.status).toBe(429);
    expect(retried.status).toBe(200);
    // The client's own retry delay is at most 100 ms here, so a gap of a second can only come from Retry-After.
    expect(retried.receivedAt - throttled.receivedAt).toBeGreaterThanOrEqual(990);
  });

  test('server error is retried to success', async () => {
    harness.emulator.injectFault({ method: 'PUT', path: /\/codes\/retried-code\/versions\/1$/, times: 2, response: { kind: 'server-error' } });
    const start = harness.emulator.requests.length;

    const code = await harness.client.codeVersions.createOrUpdate(rg, ws, 'retried-code', '1', { properties: { codeUri: 'https://example.invalid/c' } });

    expect(code.name).toBe('1');
    expect(requestsSince(start, /\/codes\/retried-code\/versions\/1$/).map((request) => request.status)).toEqual([500, 500, 201]);
  });

  test('persistent server error surfaces', async () => {
    harness.emulator.injectFault({ method: 'GET', path: /\/jobs\/any-job$/, times: 10, response: { kind: 'server-error' } });

    const error = await restError(() => harness.client.jobs.get(rg, ws, 'any-job'));

    expect(error.statusCode).toBe(500);
    expect(error.code).toBe('InternalServerError');
  });

  test('unauthorized fault gives a 401 RestError', async () => {
    harness.emulator.injectFault({ path: /\/datastores$/, response: { kind: 'unauthorized' } });

    const error = await restError(async () => {
      for await (const datastore of harness.client.datastores.list(rg, ws)) void datastore;
    });

    expect(error.statusCode).toBe(401);
    expect(error.code).toBe('AuthenticationFailed');
  });

  test('forbidden fault gives a 403 RestError', async () => {
    harness.emulator.injectFault({ method: 'PUT', path: /\/jobs\/forbidden-job$/, response: { kind: 'forbidden' } });
    const body = pipelineJobBody(harness.emulator, componentId, { inputFolder: 'in/f', outputFile: 'out/f/s.jsonl' });

    const error = await restError(() => harness.client.jobs.createOrUpdate(rg, ws, 'forbidden-job', body));

    expect(error.statusCode).toBe(403);
    expect(error.code).toBe('AuthorizationFailed');
    expect(error.message).toContain('Microsoft.MachineLearningServices/workspaces/jobs/write');
    expect(harness.emulator.jobStatus('forbidden-job')).toBeUndefined();
  });

  test.each(['server-error', 'drop-connection'] as const)('lost job PUT response (%s) retried safely', async (then) => {
    const jobName = `lost-response-${then}`;
    harness.emulator.injectFault({ method: 'PUT', path: new RegExp(`/jobs/${jobName}$`), response: { kind: 'lost-response', then } });
    const body = pipelineJobBody(harness.emulator, componentId, { inputFolder: `in/${jobName}`, outputFile: `out/${jobName}/s.jsonl` });
    const start = harness.emulator.requests.length;

    const job = await harness.client.jobs.createOrUpdate(rg, ws, jobName, body);

    const puts = requestsSince(start, new RegExp(`/jobs/${jobName}$`)).filter((request) => request.method === 'PUT');
    expect(job.name).toBe(jobName);
    expect(puts.map((request) => request.status)).toEqual([then === 'server-error' ? 500 : undefined, 200]);
    expect(puts[0].fault).toBe('lost-response');
    expect(harness.emulator.jobStatusHistory(jobName)[0]).toBe('NotStarted');
  });
});
