import { InvalidBatchInputError, validateBatchInput } from '../workflows/input';

function problemsOf(raw: unknown): { field: string; value: unknown; allowed: string }[] {
  try {
    validateBatchInput(raw);
  } catch (error) {
    if (error instanceof InvalidBatchInputError) return error.problems;
    throw error;
  }
  throw new Error('expected the input to be rejected');
}

describe('validateBatchInput', () => {
  test('applies documented defaults to a minimal input', () => {
    const input = validateBatchInput({ inputFolder: '/data/images' });
    expect(input).toEqual({
      inputFolder: '/data/images',
      backend: 'local',
      entryScript: 'score.py',
      programArguments: ['--input_root', '${{inputs.input_data}}'],
      miniBatchSize: 10,
      runInvocationTimeout: 60,
      maxRetries: 2,
      errorThreshold: -1,
      miniBatchErrorThreshold: -1,
      outputAction: 'append_row',
      appendRowFileName: 'parallel_run_step.txt',
      secretNames: ['model-signing-key'],
      assetsOnFailure: 'keep',
      operatorRetryTimeout: 86400,
      followUpRounds: 0,
    });
  });

  test('own code directory declares no secrets by default', () => {
    const input = validateBatchInput({ inputFolder: '/data', codeDirectory: '/code' });
    expect(input.secretNames).toEqual([]);
    expect(input.codeDirectory).toBe('/code');
  });

  test('keeps every valid explicit field', () => {
    const raw = {
      inputFolder: '/data',
      backend: 'local',
      codeDirectory: '/code',
      entryScript: 'pkg/entry.py',
      programArguments: ['--x', '1'],
      miniBatchSize: 3,
      processCount: 4,
      runInvocationTimeout: 5,
      maxRetries: 0,
      errorThreshold: 7,
      miniBatchErrorThreshold: 0,
      outputAction: 'summary_only',
      appendRowFileName: 'rows.txt',
      secretNames: ['a-key'],
      resultsFolder: '/out',
      assetsOnFailure: 'remove_created',
      operatorRetryTimeout: 0,
      followUpRounds: 0,
    };
    expect(validateBatchInput(raw)).toEqual(raw);
  });

  test('keeps follow-up rounds and a rescore', () => {
    const raw = {
      inputFolder: '/data',
      resultsFolder: '/out',
      followUpRounds: 3,
      rescore: { workflowId: 'batch-1', datasetVersion: '0123456789abcdef' },
    };
    expect(validateBatchInput(raw)).toMatchObject(raw);
  });

  test.each([
    ['not an object', 'just a string', '(input)'],
    ['null', null, '(input)'],
    ['an array', [{ inputFolder: '/x' }], '(input)'],
  ])('rejects input that is %s', (_label, raw, field) => {
    expect(problemsOf(raw).map((p) => p.field)).toEqual([field]);
  });

  test.each([
    ['inputFolder', { inputFolder: '' }],
    ['inputFolder', { inputFolder: 'relative/path' }],
    ['inputFolder', {}],
    ['backend', { inputFolder: '/d', backend: 'gpu' }],
    ['azure', { inputFolder: 'images', backend: 'azure' }],
    ['azure.datastore.secretName', { inputFolder: 'images', backend: 'azure', azure: { compute: 'cpu', datastore: { name: 'd', accountName: 'acct1', containerName: 'data', credential: 'sas' } } }],
    ['azure.datastore.key', { inputFolder: 'images', backend: 'azure', azure: { compute: 'cpu', datastore: { name: 'd', accountName: 'acct1', containerName: 'data', key: 'abc' } } }],
    ['inputFolder', { inputFolder: '/abs', backend: 'azure', azure: { compute: 'cpu', datastore: { name: 'd', accountName: 'acct1', containerName: 'data' } } }],
    ['azure', { inputFolder: '/d', azure: { compute: 'cpu' } }],
    ['miniBatchSize', { inputFolder: '/d', miniBatchSize: 0 }],
    ['miniBatchSize', { inputFolder: '/d', miniBatchSize: 2.5 }],
    ['miniBatchSize', { inputFolder: '/d', miniBatchSize: '10' }],
    ['processCount', { inputFolder: '/d', processCount: -1 }],
    ['runInvocationTimeout', { inputFolder: '/d', runInvocationTimeout: 0 }],
    ['maxRetries', { inputFolder: '/d', maxRetries: -1 }],
    ['errorThreshold', { inputFolder: '/d', errorThreshold: -2 }],
    ['miniBatchErrorThreshold', { inputFolder: '/d', miniBatchErrorThreshold: 1.5 }],
    ['outputAction', { inputFolder: '/d', outputAction: 'append_rows' }],
    ['appendRowFileName', { inputFolder: '/d', appendRowFileName: '../escape.txt' }],
    ['followUpRounds', { inputFolder: '/d', followUpRounds: 11 }],
    ['followUpRounds', { inputFolder: '/d', followUpRounds: 1, outputAction: 'summary_only' }],
    ['resultsFolder', { inputFolder: '/d', rescore: { workflowId: 'b', datasetVersion: 'v' } }],
    ['rescore.datasetVersion', { inputFolder: '/d', resultsFolder: '/out', rescore: { workflowId: 'b' } }],
    ['rescore.other', { inputFolder: '/d', resultsFolder: '/out', rescore: { workflowId: 'b', datasetVersion: 'v', other: 1 } }],
    ['entryScript', { inputFolder: '/d', entryScript: '../outside.py' }],
    ['entryScript', { inputFolder: '/d', entryScript: 'score.sh' }],
    ['codeDirectory', { inputFolder: '/d', codeDirectory: 'relative' }],
    ['programArguments', { inputFolder: '/d', programArguments: ['--a', 1] }],
    ['secretNames[0]', { inputFolder: '/d', secretNames: ['has space'] }],
    ['resultsFolder', { inputFolder: '/d', resultsFolder: 'out' }],
    ['miniBatchSzie', { inputFolder: '/d', miniBatchSzie: 5 }],
  ])('rejects invalid field %s', (field, raw) => {
    const problems = problemsOf(raw);
    expect(problems.map((p) => p.field)).toContain(field);
  });

  test('message names the field, the value and what is allowed', () => {
    expect(() => validateBatchInput({ inputFolder: '/d', miniBatchSize: 0 })).toThrow(
      'miniBatchSize = 0 is not allowed; expected an integer from 1 to 100000',
    );
  });

  test('reports every invalid field at once', () => {
    const fields = problemsOf({ inputFolder: 3, maxRetries: 'x', outputAction: 1 }).map((p) => p.field);
    expect(fields).toEqual(expect.arrayContaining(['inputFolder', 'maxRetries', 'outputAction']));
  });

  test('unknown field message lists the known fields', () => {
    const [problem] = problemsOf({ inputFolder: '/d', folder: '/x' });
    expect(problem?.allowed).toContain('known fields are inputFolder');
  });

  test('accepts azure settings and keeps them', () => {
    const azure = {
      compute: 'cpu-cluster',
      instanceCount: 2,
      keyVaultUrl: 'https://vault1.vault.azure.net',
      datastore: { name: 'images_store', accountName: 'acct1', containerName: 'images', credential: 'account_key', secretName: 'images-key' },
      environment: { image: 'mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest', condaFile: 'conda.yaml' },
      environmentVariables: { LOG_LEVEL: 'INFO' },
    };

    const input = validateBatchInput({ inputFolder: 'batches/one', backend: 'azure', azure });

    expect(input.azure).toEqual({ ...azure, datastore: { ...azure.datastore } });
    expect(input.backend).toBe('azure');
  });

  test('datastore key in the input is rejected without echoing it', () => {
    const secretValue = 'c2VjcmV0LWtleS12YWx1ZQ==';
    let message = '';
    try {
      validateBatchInput({
        inputFolder: 'x',
        backend: 'azure',
        azure: { compute: 'cpu', datastore: { name: 'd', accountName: 'acct1', containerName: 'data', key: secretValue } },
      });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain('azure.datastore.key');
    expect(message).toContain('Keys and SAS tokens belong in Key Vault');
    expect(message).not.toContain(secretValue);
  });
});
