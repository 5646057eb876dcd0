import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RestError, createHttpHeaders, createPipelineRequest } from '@azure/core-rest-pipeline';
import { createCredential, noCredentialMessage } from '../../activities/backends/azure/credentials';
import { toAzureName, toProgramArgumentsString } from '../../activities/backends/azure/job-body';
import { classifyAzureError } from '../../activities/backends/azure/rest-errors';
import { resolveWorkspace } from '../../activities/backends/azure/workspace-config';
import { StageError } from '../../activities/errors';

// Pure parts of the Azure backend: workspace resolution, credential configuration, error classification and
// naming. The stages themselves are tested end to end against the emulator, Azurite and the Key Vault double.

function restError(status: number | undefined, headers: Record<string, string> = {}, code = 'SomeCode'): RestError {
  const request = createPipelineRequest({ url: 'https://management.azure.com/x' });
  return new RestError(`the message for ${status}`, {
    code,
    ...(status !== undefined
      ? { statusCode: status, request, response: { status, headers: createHttpHeaders(headers), request } }
      : { request }),
  });
}

const operation = { action: 'read workspace ws1', role: 'AzureML Data Scientist' };

describe('resolveWorkspace', () => {
  const config = { subscription_id: 'sub-file', resource_group: 'rg-file', workspace_name: 'ws-file' };

  test('finds .azureml/config.json in a parent folder', async () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-cfg-'));
    mkdirSync(path.join(root, '.azureml'));
    writeFileSync(path.join(root, '.azureml', 'config.json'), JSON.stringify(config));
    const nested = path.join(root, 'a', 'b');
    mkdirSync(nested, { recursive: true });

    const workspace = await resolveWorkspace({}, {}, nested);

    expect(workspace).toEqual({
      subscriptionId: 'sub-file',
      resourceGroup: 'rg-file',
      workspaceName: 'ws-file',
      configFile: path.join(root, '.azureml', 'config.json'),
    });
  });

  test('environment overrides the file and input overrides both', async () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-cfg-'));
    writeFileSync(path.join(root, 'config.json'), JSON.stringify(config));

    const workspace = await resolveWorkspace(
      { workspaceName: 'ws-input' },
      { AZUREML_SUBSCRIPTION_ID: 'sub-env', AZUREML_WORKSPACE_NAME: 'ws-env' },
      root,
    );

    expect(workspace.subscriptionId).toBe('sub-env');
    expect(workspace.resourceGroup).toBe('rg-file');
    expect(workspace.workspaceName).toBe('ws-input');
  });

  test('missing fields name every source', async () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-cfg-'));

    const error = (await resolveWorkspace({ subscriptionId: 's' }, {}, root).catch((e: unknown) => e)) as StageError;

    expect(error).toBeInstanceOf(StageError);
    expect(error.kind).toBe('InvalidInput');
    expect(error.message).toContain('resourceGroup, workspaceName missing');
    expect(error.message).toContain('AZUREML_RESOURCE_GROUP');
    expect(error.message).toContain('"workspace_name" in .azureml/config.json');
  });
});

describe('createCredential', () => {
  test('service principal without its variables names them', () => {
    expect(() => createCredential({ AMLBATCH_AZURE_CREDENTIAL: 'service-principal-secret', AZURE_TENANT_ID: 't' })).toThrow(
      'credential service-principal-secret needs AZURE_CLIENT_ID, AZURE_CLIENT_SECRET',
    );
  });

  test('unknown credential kind lists the valid ones', () => {
    expect(() => createCredential({ AMLBATCH_AZURE_CREDENTIAL: 'password' })).toThrow(
      'AMLBATCH_AZURE_CREDENTIAL=password is invalid; use one of default, service-principal-secret',
    );
  });

  test('no-credential message names every variable', () => {
    const message = noCredentialMessage('default', 'nothing found');
    for (const name of ['AZURE_TENANT_ID', 'AZURE_CLIENT_ID', 'AZURE_CLIENT_SECRET', 'AZURE_CLIENT_CERTIFICATE_PATH', 'AZURE_FEDERATED_TOKEN_FILE', 'AMLBATCH_AZURE_CREDENTIAL']) {
      expect(message).toContain(name);
    }
  });
});

describe('classifyAzureError', () => {
  test.each([
    [401, 'PermissionDenied'],
    [403, 'PermissionDenied'],
    [404, 'NotFound'],
    [409, 'Conflict'],
    [400, 'InvalidInput'],
    [429, 'Transient'],
    [500, 'Transient'],
    [503, 'Transient'],
    [undefined, 'Transient'],
  ])('status %s is %s', (status, kind) => {
    expect(classifyAzureError(restError(status), operation).kind).toBe(kind);
  });

  test('403 names the missing role', () => {
    const error = classifyAzureError(restError(403, {}, 'AuthorizationFailed'), operation);
    expect(error.message).toBe(
      'read workspace ws1 was denied (403, AuthorizationFailed: the message for 403); grant the worker\'s identity the AzureML Data Scientist role',
    );
  });

  test('429 carries the Retry-After delay', () => {
    expect(classifyAzureError(restError(429, { 'retry-after': '7' }), operation).retryAfterMs).toBe(7000);
    expect(classifyAzureError(restError(503, { 'retry-after-ms': '250' }), operation).retryAfterMs).toBe(250);
  });
});

describe('Azure names', () => {
  test('program arguments keep their boundaries', () => {
    expect(toProgramArgumentsString(['--input_root', '${{inputs.input_data}}', 'two words', "it's", ''])).toBe(
      `--input_root \${{inputs.input_data}} 'two words' 'it'"'"'s' ''`,
    );
  });

  test('names are made valid and stay distinct', () => {
    expect(toAzureName('amlbatch-batch-1')).toBe('amlbatch-batch-1');
    const a = toAzureName('amlbatch-my batch#1');
    const b = toAzureName('amlbatch-my batch%1');
    expect(a).toMatch(/^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$/);
    expect(a).not.toBe(b);
    expect(toAzureName('x'.repeat(300))).toHaveLength(255);
  });
});
