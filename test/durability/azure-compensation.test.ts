import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { RestError } from '@azure/core-rest-pipeline';
import { AzureBackend } from '../../activities/backends/azure/azure-backend';
import type { AzureStageSettings } from '../../activities/types';
import {
  describeWithSpec,
  pipelineJobBody,
  registerScoringAssets,
  startHarness,
  stopHarness,
  testCredential,
  type Harness,
} from '../aml-emulator/emulator-harness';

// The Azure backend's undo steps through the official SDK clients against the AML emulator: cancelling a job and
// waiting for its terminal status, and deleting a data asset version and a datastore registration.

describeWithSpec('Azure backend compensation', () => {
  let harness: Harness;
  let backend: AzureBackend;
  let settings: AzureStageSettings;
  let componentId: string;

  beforeAll(async () => {
    // Jobs stay a few seconds in each status before running, so a test can cancel one that has not ended.
    harness = await startHarness({ statusStepDelayMs: 3000 });
    ({ componentId } = await registerScoringAssets(harness, { code: 'undo-code', component: 'undo-score', version: '1', codeBlobPrefix: 'LocalUpload/00/src' }));
    backend = new AzureBackend({
      endpoints: {
        armEndpoint: harness.emulator.endpoint,
        blobEndpointTemplate: `${harness.azurite.blobEndpoint.replace(harness.azurite.accountName, '{account}')}`,
        caCertificatePem: harness.emulator.certPem,
        verifyKeyVaultChallengeResource: false,
        httpRetries: 0,
      },
      credential: testCredential,
      resultsRoot: mkdtempSync(path.join(os.tmpdir(), 'amlbatch-azure-undo-')),
      pollIntervalMs: { min: 50, max: 200 },
    });
    const { subscriptionId, resourceGroup, workspaceName } = harness.emulator;
    settings = {
      compute: 'cpu-cluster',
      datastore: { name: 'undo-store', accountName: harness.azurite.accountName, containerName: 'undo-data' },
      workspace: { subscriptionId, resourceGroup, workspaceName },
    };
  });

  afterAll(async () => {
    await stopHarness(harness);
  });

  test('cancel waits for Canceled status', async () => {
    // The job name the backend gives submission 1 of workflow undo-batch.
    await harness.client.jobs.createOrUpdate(harness.resourceGroup, harness.workspace, 'amlbatch-undo-batch-1', pipelineJobBody(harness.emulator, componentId, { inputFolder: 'in/u', outputFile: 'out/u/s.jsonl' }));
    const seen: string[] = [];

    const first = await backend.cancelScoringJob({ backend: 'azure', azure: settings, workflowId: 'undo-batch', submission: 1 }, { onPoll: (status) => seen.push(status) });
    const second = await backend.cancelScoringJob({ backend: 'azure', azure: settings, workflowId: 'undo-batch', submission: 1 }, { onPoll: () => undefined });

    expect(first).toEqual({ jobName: 'amlbatch-undo-batch-1', outcome: 'canceled', status: 'Canceled' });
    expect(seen[0]).not.toBe('Canceled');
    expect(seen.at(-1)).toBe('Canceled');
    expect(harness.emulator.jobStatus('amlbatch-undo-batch-1')).toBe('Canceled');
    expect(second).toEqual({ jobName: 'amlbatch-undo-batch-1', outcome: 'already_ended', status: 'Canceled' });
  });

  test('cancel of unsubmitted job: not_found', async () => {
    const result = await backend.cancelScoringJob({ backend: 'azure', azure: settings, workflowId: 'undo-batch', submission: 7 }, { onPoll: () => undefined });

    expect(result).toEqual({ jobName: 'amlbatch-undo-batch-7', outcome: 'not_found' });
  });

  test('data asset version deleted once', async () => {
    await harness.client.dataVersions.createOrUpdate(harness.resourceGroup, harness.workspace, 'undo-data', 'abc123', {
      properties: { dataType: 'uri_folder', dataUri: 'azureml://datastores/workspaceblobstore/paths/in/u/' },
    });

    const first = await backend.deleteDatasetVersion({ backend: 'azure', azure: settings, datasetName: 'undo-data', version: 'abc123' });
    const second = await backend.deleteDatasetVersion({ backend: 'azure', azure: settings, datasetName: 'undo-data', version: 'abc123' });
    const lookup = await harness.client.dataVersions.get(harness.resourceGroup, harness.workspace, 'undo-data', 'abc123').then(
      () => 200,
      (error: RestError) => error.statusCode,
    );

    expect(first).toEqual({ deleted: true });
    expect(second).toEqual({ deleted: false });
    expect(lookup).toBe(404);
  });

  test('datastore registration deleted once', async () => {
    await harness.azurite.serviceClient().getContainerClient('undo-data').createIfNotExists();
    await harness.client.datastores.createOrUpdate(
      harness.resourceGroup,
      harness.workspace,
      'undo-store',
      { properties: { datastoreType: 'AzureBlob', accountName: harness.azurite.accountName, containerName: 'undo-data', credentials: { credentialsType: 'None' } } } as never,
      { skipValidation: true },
    );

    const first = await backend.deleteDatastore({ backend: 'azure', azure: settings, datastoreName: 'undo-store', root: 'unused' });
    const second = await backend.deleteDatastore({ backend: 'azure', azure: settings, datastoreName: 'undo-store', root: 'unused' });

    expect(first).toEqual({ deleted: true });
    expect(second).toEqual({ deleted: false });
    const containerStillThere = await harness.azurite.serviceClient().getContainerClient('undo-data').exists();
    expect(containerStillThere).toBe(true);
  });
});
