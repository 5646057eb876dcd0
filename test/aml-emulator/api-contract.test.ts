/**
 * The AML emulator's REST contract, driven through the real `@azure/arm-machinelearning` client: api-version,
 * authentication, ARM error bodies, name rules, immutable versions, paging, datastores and spec validation.
 */
import https from 'node:https';
import type { RestError } from '@azure/core-rest-pipeline';
import type { DataVersionBase } from '@azure/arm-machinelearning';
import {
  createClient,
  describeWithSpec,
  parallelComponentSpec,
  pipelineJobBody,
  registerScoringAssets,
  startHarness,
  stopHarness,
  type Harness,
} from './emulator-harness';

/** Sends a raw HTTPS request to the emulator, bypassing the client's policies, and returns status, headers and body. */
function rawRequest(
  harness: Harness,
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: { error?: { code?: string; message?: string; details?: unknown[] } } }> {
  return new Promise((resolve, reject) => {
    const request = https.request(`${harness.emulator.endpoint}${path}`, { method, headers, ca: harness.emulator.certPem }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: text === '' ? {} : JSON.parse(text) });
      });
    });
    request.on('error', reject);
    request.end();
  });
}

/** Runs `action` and returns the RestError it rejects with; fails the test when it resolves. */
async function restError(action: () => Promise<unknown>): Promise<RestError> {
  try {
    await action();
  } catch (error) {
    return error as RestError;
  }
  throw new Error('expected the call to fail with a RestError, but it succeeded');
}

describeWithSpec('AML emulator API contract', () => {
  let harness: Harness;
  let rg: string;
  let ws: string;

  beforeAll(async () => {
    harness = await startHarness({ listPageSize: 2 });
    rg = harness.resourceGroup;
    ws = harness.workspace;
  });

  afterAll(async () => {
    await stopHarness(harness);
  });

  let validationErrorsBefore = 0;
  beforeEach(() => {
    validationErrorsBefore = harness.emulator.validationErrors.length;
  });

  afterEach(() => {
    expect(harness.emulator.validationErrors.slice(validationErrorsBefore)).toEqual([]);
  });

  test('workspace get reports linked resources', async () => {
    const workspace = await harness.client.workspaces.get(rg, ws);

    expect(workspace.id).toBe(harness.emulator.workspaceArmId);
    expect(workspace.storageAccount).toMatch(/\/providers\/Microsoft\.Storage\/storageAccounts\/devstoreaccount1$/);
    expect(workspace.keyVault).toMatch(/\/providers\/Microsoft\.KeyVault\/vaults\/[^/]+$/);
    expect(workspace.discoveryUrl?.startsWith(harness.emulator.endpoint)).toBe(true);
  });

  test('missing api-version is rejected', async () => {
    const response = await rawRequest(harness, 'GET', harness.emulator.workspaceArmId, { authorization: 'Bearer token' });

    expect(response.status).toBe(400);
    expect(response.body.error?.code).toBe('MissingApiVersionParameter');
    expect(response.body.error?.details).toEqual([]);
  });

  test('unsupported api-version is rejected', async () => {
    const client = createClient(harness.emulator, { apiVersion: '2023-04-01' });

    const error = await restError(() => client.workspaces.get(rg, ws));

    expect(error.statusCode).toBe(400);
    expect(error.code).toBe('NoRegisteredProviderFound');
    expect(error.message).toContain("'2023-04-01'");
    expect(error.message).toContain("'2022-10-01'");
  });

  test('missing bearer token gets 401', async () => {
    const response = await rawRequest(harness, 'GET', `${harness.emulator.workspaceArmId}?api-version=2022-10-01`);

    expect(response.status).toBe(401);
    expect(response.headers['www-authenticate']).toMatch(/^Bearer /);
    expect(response.body.error?.code).toBe('AuthenticationFailed');
  });

  test('unknown job gives a ResourceNotFound RestError', async () => {
    const error = await restError(() => harness.client.jobs.get(rg, ws, 'no-such-job'));

    expect(error.statusCode).toBe(404);
    expect(error.code).toBe('ResourceNotFound');
    expect(error.message).toContain(`workspaces/${ws}/jobs/no-such-job`);
  });

  test('invalid resource name is rejected on PUT', async () => {
    const error = await restError(() =>
      harness.client.codeVersions.createOrUpdate(rg, ws, 'bad name', '1', { properties: { codeUri: 'https://example.invalid/code' } }),
    );

    expect(error.statusCode).toBe(400);
    expect(error.code).toBe('UserError');
    expect(error.message).toContain("'bad name'");
    expect(harness.emulator.requests.at(-1)?.path).toContain('/codes/bad%20name/versions/1');
  });

  test('code version re-put and immutability', async () => {
    const statuses: number[] = [];
    const onResponse = (response: { status: number }): void => {
      statuses.push(response.status);
    };
    const body = { properties: { codeUri: `${harness.emulator.defaultDatastore.blobEndpoint}/c/LocalUpload/aa/src`, description: 'first' } };

    await harness.client.codeVersions.createOrUpdate(rg, ws, 'immutable-code', '1', body, { onResponse });
    const again = await harness.client.codeVersions.createOrUpdate(rg, ws, 'immutable-code', '1', { properties: { ...body.properties, description: 'second' } }, { onResponse });
    const error = await restError(() =>
      harness.client.codeVersions.createOrUpdate(rg, ws, 'immutable-code', '1', { properties: { codeUri: `${body.properties.codeUri}-changed` } }),
    );

    expect(statuses).toEqual([201, 200]);
    expect(again.properties.description).toBe('second');
    expect(error.statusCode).toBe(400);
    expect(error.code).toBe('UserError');
    expect(error.message).toBe('Asset paths cannot be updated.');
  });

  test('environment version change is rejected', async () => {
    await harness.client.environmentVersions.createOrUpdate(rg, ws, 'immutable-env', '3', { properties: { image: 'python:3.11' } });

    const error = await restError(() => harness.client.environmentVersions.createOrUpdate(rg, ws, 'immutable-env', '3', { properties: { image: 'python:3.12' } }));
    const stored = await harness.client.environmentVersions.get(rg, ws, 'immutable-env', '3');

    expect(error.statusCode).toBe(400);
    expect(error.message).toBe('Environment immutable-env with version 3 is already registered and cannot be changed.');
    expect(stored.properties.image).toBe('python:3.11');
    expect(stored.properties.environmentType).toBe('UserCreated');
  });

  test('unknown dataType violates the spec', async () => {
    const body = { properties: { dataType: 'uri_folders', dataUri: 'azureml://datastores/workspaceblobstore/paths/x/' } } as unknown as DataVersionBase;

    const error = await restError(() => harness.client.dataVersions.createOrUpdate(rg, ws, 'bad-data', '1', body));

    expect(error.statusCode).toBe(400);
    expect(error.code).toBe('ValidationError');
    expect(error.message).toContain('/properties/dataType');
    expect(error.message).toContain('uri_folders');
  });

  test('componentSpec unknown key is rejected', async () => {
    const spec = { ...parallelComponentSpec('bad-component', '1', '/x', '/y'), unknown_setting: 5 };

    const error = await restError(() => harness.client.componentVersions.createOrUpdate(rg, ws, 'bad-component', '1', { properties: { componentSpec: spec } }));

    expect(error.statusCode).toBe(400);
    expect(error.code).toBe('UserError');
    expect(error.message).toContain('/properties/componentSpec/unknown_setting: unknown key');
  });

  test('paged lists iterate every page', async () => {
    for (let version = 1; version <= 5; version += 1) {
      await harness.client.dataVersions.createOrUpdate(rg, ws, 'paged-data', String(version), {
        properties: { dataType: 'uri_folder', dataUri: `azureml://datastores/workspaceblobstore/paths/paged/${version}/` },
      });
    }
    const before = harness.emulator.requests.length;

    const versions: string[] = [];
    for await (const item of harness.client.dataVersions.list(rg, ws, 'paged-data')) versions.push(item.name ?? '');

    const listRequests = harness.emulator.requests.slice(before).filter((request) => request.path.endsWith('/data/paged-data/versions'));
    expect(versions.sort()).toEqual(['1', '2', '3', '4', '5']);
    expect(listRequests).toHaveLength(3);
    expect(listRequests.every((request) => request.status === 200)).toBe(true);
  });

  test('default datastore listed without secrets', async () => {
    const defaults = [];
    for await (const datastore of harness.client.datastores.list(rg, ws, { isDefault: true })) defaults.push(datastore);
    const secrets = await harness.client.datastores.listSecrets(rg, ws, 'workspaceblobstore');

    expect(defaults.map((datastore) => datastore.name)).toEqual(['workspaceblobstore']);
    expect(defaults[0].properties.isDefault).toBe(true);
    expect(defaults[0].properties.credentials).toEqual({ credentialsType: 'AccountKey' });
    expect(secrets).toEqual({ secretsType: 'AccountKey', key: harness.azurite.accountKey });
  });

  test('datastore put checks access, hides secrets', async () => {
    const container = 'user-data';
    await harness.azurite.serviceClient().getContainerClient(container).createIfNotExists();
    const accountName = harness.azurite.accountName;

    const saved = await harness.client.datastores.createOrUpdate(rg, ws, 'userstore', {
      properties: {
        datastoreType: 'AzureBlob',
        accountName,
        containerName: container,
        credentials: { credentialsType: 'AccountKey', secrets: { secretsType: 'AccountKey', key: harness.azurite.accountKey } },
      },
    } as never);
    const wrongKey = await restError(() =>
      harness.client.datastores.createOrUpdate(rg, ws, 'badkeystore', {
        properties: {
          datastoreType: 'AzureBlob',
          accountName,
          containerName: container,
          credentials: { credentialsType: 'AccountKey', secrets: { secretsType: 'AccountKey', key: Buffer.from('not the key').toString('base64') } },
        },
      } as never),
    );
    await harness.client.datastores.createOrUpdate(
      rg,
      ws,
      'identitystore',
      { properties: { datastoreType: 'AzureBlob', accountName, containerName: container, credentials: { credentialsType: 'None' } } } as never,
      { skipValidation: true },
    );
    const noSecrets = await restError(() => harness.client.datastores.listSecrets(rg, ws, 'identitystore'));

    expect(saved.properties.credentials).toEqual({ credentialsType: 'AccountKey' });
    expect(JSON.stringify(saved)).not.toContain(harness.azurite.accountKey);
    expect(wrongKey.statusCode).toBe(400);
    expect(wrongKey.message).toContain('could not be validated');
    expect(noSecrets.statusCode).toBe(400);
    expect(noSecrets.message).toContain('credentials of type None');
  });

  describe('jobs', () => {
    let componentId: string;

    beforeAll(async () => {
      // The code folder is never uploaded: these jobs fail while preparing, which the tests here do not look at.
      ({ componentId } = await registerScoringAssets(harness, { code: 'contract-code', component: 'contract-score', version: '1', codeBlobPrefix: 'LocalUpload/00/src' }));
    });

    test('identical job re-put returns 200', async () => {
      const body = pipelineJobBody(harness.emulator, componentId, { inputFolder: 'in/a', outputFile: 'out/a/scores.jsonl' });
      const statuses: number[] = [];
      const onResponse = (response: { status: number }): void => {
        statuses.push(response.status);
      };

      const created = await harness.client.jobs.createOrUpdate(rg, ws, 'same-job', body, { onResponse });
      await harness.client.jobs.createOrUpdate(rg, ws, 'same-job', body, { onResponse });

      expect(statuses).toEqual([201, 200]);
      expect(created.properties.status).toBe('NotStarted');
    });

    test('job re-put updates mutable fields', async () => {
      const body = pipelineJobBody(harness.emulator, componentId, { inputFolder: 'in/t', outputFile: 'out/t/scores.jsonl', tags: { run: '1' } });
      await harness.client.jobs.createOrUpdate(rg, ws, 'retagged-job', body);

      const updated = await harness.client.jobs.createOrUpdate(rg, ws, 'retagged-job', {
        properties: { ...body.properties, tags: { run: '2' }, displayName: 'renamed' },
      });

      expect(updated.properties.tags).toEqual({ run: '2' });
      expect(updated.properties.displayName).toBe('renamed');
    });

    test('changed job resubmission is rejected', async () => {
      const first = pipelineJobBody(harness.emulator, componentId, { inputFolder: 'in/b', outputFile: 'out/b/scores.jsonl' });
      const second = pipelineJobBody(harness.emulator, componentId, { inputFolder: 'in/other', outputFile: 'out/b/scores.jsonl' });
      await harness.client.jobs.createOrUpdate(rg, ws, 'changed-job', first);

      const error = await restError(() => harness.client.jobs.createOrUpdate(rg, ws, 'changed-job', second));

      expect(error.statusCode).toBe(400);
      expect(error.code).toBe('UserError');
      expect(error.message).toMatch(/^A job with this name already exists\. If you are trying to create a new job, use a different name\./);
    });

    test('pipeline input without uri is rejected', async () => {
      // The 2.1.1 client serializes pipeline-level uri_folder inputs without uri (see PipelineJobOptions.dataBinding);
      // the spec requires uri, so the emulator rejects what the real service would.
      const body = pipelineJobBody(harness.emulator, componentId, { inputFolder: 'in/p', outputFile: 'out/p/scores.jsonl', dataBinding: 'pipeline' });

      const error = await restError(() => harness.client.jobs.createOrUpdate(rg, ws, 'pipeline-bound-job', body));

      expect(error.statusCode).toBe(400);
      expect(error.code).toBe('ValidationError');
      expect(error.message).toContain('/properties/inputs/input_data/uri: Missing required property: uri');
    });

    test('job on an unknown compute is rejected', async () => {
      const body = pipelineJobBody(harness.emulator, componentId, { inputFolder: 'in/c', outputFile: 'out/c/scores.jsonl' });
      const properties = body.properties as unknown as { settings: Record<string, unknown>; jobs: { score: Record<string, unknown> } };
      const unknownCompute = harness.emulator.computeIds[0].replace(/computes\/.*$/, 'computes/gpu-cluster');
      properties.settings.default_compute = unknownCompute;
      properties.jobs.score.computeId = unknownCompute;

      const error = await restError(() => harness.client.jobs.createOrUpdate(rg, ws, 'unknown-compute-job', body));

      expect(error.statusCode).toBe(400);
      expect(error.message).toContain('compute gpu-cluster does not exist in the workspace; existing computes: cpu-cluster');
    });

    test('job list filters by tag across pages', async () => {
      for (const name of ['tagged-1', 'tagged-2', 'tagged-3']) {
        await harness.client.jobs.createOrUpdate(rg, ws, name, pipelineJobBody(harness.emulator, componentId, { inputFolder: `in/${name}`, outputFile: `out/${name}/s.jsonl`, tags: { batch: name } }));
      }
      const before = harness.emulator.requests.length;

      const names: string[] = [];
      for await (const job of harness.client.jobs.list(rg, ws, { tag: 'batch' })) names.push(job.name ?? '');

      const listRequests = harness.emulator.requests.slice(before).filter((request) => request.path.endsWith('/jobs'));
      expect(names.sort()).toEqual(['tagged-1', 'tagged-2', 'tagged-3']);
      expect(listRequests).toHaveLength(2);
      expect(listRequests.every((request) => request.query.tag === 'batch')).toBe(true);
    });

    test('cancel LRO polls to completion', async () => {
      await harness.client.jobs.createOrUpdate(rg, ws, 'cancel-lro-job', pipelineJobBody(harness.emulator, componentId, { inputFolder: 'in/d', outputFile: 'out/d/s.jsonl' }));
      const before = harness.emulator.requests.length;

      await harness.client.jobs.beginCancelAndWait(rg, ws, 'cancel-lro-job', { updateIntervalInMs: 20 });
      const job = await harness.client.jobs.get(rg, ws, 'cancel-lro-job');

      const requests = harness.emulator.requests.slice(before);
      const cancel = requests.find((request) => request.method === 'POST' && request.path.endsWith('/jobs/cancel-lro-job/cancel'));
      const polls = requests.filter((request) => request.path.includes('/mfeOperationResults/'));
      expect(cancel?.status).toBe(202);
      expect(polls.at(-1)?.status).toBe(200);
      expect(job.properties.status).toBe('Canceled');
      expect(harness.emulator.jobStatusHistory('cancel-lro-job').slice(-2)).toEqual(['CancelRequested', 'Canceled']);
    });

    test('delete LRO removes the job', async () => {
      await harness.client.jobs.createOrUpdate(rg, ws, 'deleted-job', pipelineJobBody(harness.emulator, componentId, { inputFolder: 'in/e', outputFile: 'out/e/s.jsonl' }));

      await harness.client.jobs.beginDeleteAndWait(rg, ws, 'deleted-job', { updateIntervalInMs: 20 });
      const error = await restError(() => harness.client.jobs.get(rg, ws, 'deleted-job'));

      expect(error.statusCode).toBe(404);
      expect(harness.emulator.jobStatus('deleted-job')).toBeUndefined();
    });
  });
});
