import { InvalidBatchInputError } from '../../workflows/input';
import { applyCorrections, mergePatch, retryFieldsFor, retrySubmitsNewJob } from '../../workflows/operator-retry';

// The pure rules of an operator's retry: which fields each stage takes, and how corrections merge and validate.

const azureInput = {
  inputFolder: 'images/batch-1',
  backend: 'azure',
  azure: { compute: 'cpu', datastore: { name: 'store', accountName: 'acct1', containerName: 'data' } },
};

describe('mergePatch', () => {
  test('null removes a field', () => {
    expect(mergePatch({ inputFolder: '/d', processCount: 4 }, { processCount: null })).toEqual({ inputFolder: '/d' });
  });

  test('nested objects merge field by field', () => {
    const merged = mergePatch(azureInput, { azure: { datastore: { allowUpdate: true } } });

    expect(merged.azure).toEqual({ compute: 'cpu', datastore: { name: 'store', accountName: 'acct1', containerName: 'data', allowUpdate: true } });
    expect(azureInput.azure.datastore).toEqual({ name: 'store', accountName: 'acct1', containerName: 'data' });
  });

  test('arrays are replaced whole', () => {
    expect(mergePatch({ secretNames: ['a', 'b'] }, { secretNames: ['c'] })).toEqual({ secretNames: ['c'] });
  });
});

describe('applyCorrections', () => {
  test('nested datastore field allowed at ensureDatastore', () => {
    const corrected = applyCorrections('ensureDatastore', 'Conflict', azureInput, { azure: { datastore: { allowUpdate: true } } });

    expect(corrected.changedFields).toEqual(['azure.datastore.allowUpdate']);
    expect(corrected.resolved.azure?.datastore.allowUpdate).toBe(true);
  });

  test('job setting rejected at checkVaultAccess', () => {
    let error: unknown;
    try {
      applyCorrections('checkVaultAccess', 'NotFound', { inputFolder: '/d' }, { errorThreshold: 3 });
    } catch (caught) {
      error = caught;
    }

    expect(error).toBeInstanceOf(InvalidBatchInputError);
    expect((error as InvalidBatchInputError).problems.map((problem) => problem.field)).toEqual(['errorThreshold']);
  });

  test('invalid value rejected like a new input', () => {
    expect(() => applyCorrections('waitForJob', 'JobFailed', { inputFolder: '/d' }, { miniBatchSize: 0 })).toThrow(
      'miniBatchSize = 0 is not allowed; expected an integer from 1 to 100000',
    );
  });

  test('no corrections keep the input', () => {
    const corrected = applyCorrections('registerDataset', 'PermissionDenied', { inputFolder: '/d' }, undefined);

    expect(corrected.raw).toEqual({ inputFolder: '/d' });
    expect(corrected.changedFields).toEqual([]);
  });

  test('non-object corrections rejected', () => {
    expect(() => applyCorrections('collectResults', 'Conflict', { inputFolder: '/d' }, 'resultsFolder=/x')).toThrow(
      'expected an object of corrected input fields',
    );
  });
});

describe('retryFieldsFor', () => {
  test('failed job takes job settings', () => {
    expect(retryFieldsFor('waitForJob', 'JobFailed')).toContain('errorThreshold');
    expect(retrySubmitsNewJob('waitForJob', 'JobFailed')).toBe(true);
  });

  test('unreachable job takes only the failure policy', () => {
    expect(retryFieldsFor('waitForJob', 'JobUnreachable')).toEqual(['assetsOnFailure', 'operatorRetryTimeout']);
    expect(retrySubmitsNewJob('waitForJob', 'JobUnreachable')).toBe(false);
  });
});
