import path from 'node:path';
import { runnerChildEnvironment } from '../../activities/backends/local/runner/child-environment';
import { cleanUpTestJobs, createTestJob, readRows, runJob } from './runner-helpers';

afterEach(cleanUpTestJobs);

/**
 * Returns, for each item, the names of the variables in the Python process's environment, the values of a few
 * of them, and the names in its parent's environment (the job driver's), read from /proc where it exists.
 */
const ENVIRONMENT_SCRIPT = `
import json, os

SHOWN = ["PATH", "OMP_NUM_THREADS", "STATE_DIR", "AMLBATCH_SECRETS_FILE", "AMLBATCH_KEY_VAULT_URL",
         "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "AZUREML_BI_OUTPUT_PATH"]

def driver_names():
    try:
        with open(f"/proc/{os.getppid()}/environ", "rb") as handle:
            entries = handle.read().split(b"\\0")
    except FileNotFoundError:
        return None
    return sorted(entry.split(b"=", 1)[0].decode() for entry in entries if entry)

def init():
    pass

def run(mini_batch):
    row = {"names": sorted(os.environ), "values": {name: os.environ.get(name) for name in SHOWN}, "driver": driver_names()}
    return [json.dumps(row) for _ in mini_batch]
`;

interface EnvironmentRow {
  names: string[];
  values: Record<string, string | null>;
  driver: string[] | null;
}

/** Credentials and settings of the worker that must not reach an entry script. */
const WORKER_ONLY = {
  TEMPORAL_API_KEY: 'temporal-api-key-value',
  TEMPORAL_ADDRESS: '127.0.0.1:7299',
  AZURE_CLIENT_SECRET: 'azure-client-secret-value',
  AZUREML_ARM_TOKEN: 'azureml-token-value',
  AMLBATCH_SOMETHING: 'worker-setting',
  MSI_SECRET: 'worker-msi-secret',
  IDENTITY_HEADER: 'worker-identity-header',
  AWS_SECRET_ACCESS_KEY: 'aws-secret-value',
};

/** A secret given to local entry scripts by environment, which the scoring package's secret source reads. */
const SCRIPT_SECRETS = { AMLBATCH_SECRET_FOR_SCRIPTS: 'script-secret-value' };

/** The job's own variables, as the local backend and the Azure ML emulator set them. */
const JOB_ENVIRONMENT = {
  AMLBATCH_SECRETS_FILE: '/tmp/amlbatch-test/secrets.json',
  AMLBATCH_KEY_VAULT_URL: 'https://127.0.0.1:8443/',
  IDENTITY_ENDPOINT: 'http://127.0.0.1:8444/msi/token',
  IDENTITY_HEADER: 'job-identity-header',
};

describe('runner child environment', () => {
  const saved: Record<string, string | undefined> = {};

  beforeEach(() => {
    for (const name of [...Object.keys(WORKER_ONLY), ...Object.keys(SCRIPT_SECRETS), 'OMP_NUM_THREADS']) saved[name] = process.env[name];
    Object.assign(process.env, WORKER_ONLY, SCRIPT_SECRETS, { OMP_NUM_THREADS: '1' });
  });

  afterEach(() => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });

  test('entry script sees no worker credentials', async () => {
    const job = createTestJob({ fileCount: 4, script: ENVIRONMENT_SCRIPT });
    job.spec.environment = { ...job.spec.environment, ...JOB_ENVIRONMENT };

    const status = await runJob(job);

    expect(status.state).toBe('Completed');
    const rows = readRows(job).map((line) => JSON.parse(line) as EnvironmentRow);
    expect(rows).toHaveLength(4);
    for (const row of rows) {
      for (const name of Object.keys(WORKER_ONLY).filter((name) => name !== 'IDENTITY_HEADER')) {
        expect(row.names).not.toContain(name);
      }
      expect(row.names.filter((name) => /^(TEMPORAL|AZURE|AZUREML|MSI)_/.test(name))).toEqual(['AZUREML_BI_OUTPUT_PATH']);
      expect(row.names.filter((name) => name.startsWith('AMLBATCH_')).sort()).toEqual([
        'AMLBATCH_KEY_VAULT_URL',
        'AMLBATCH_SECRETS_FILE',
        'AMLBATCH_SECRET_FOR_SCRIPTS',
      ]);

      expect(row.values).toEqual({
        PATH: process.env.PATH ?? null,
        OMP_NUM_THREADS: '1',
        STATE_DIR: job.stateDir,
        ...JOB_ENVIRONMENT,
        AZUREML_BI_OUTPUT_PATH: path.join(job.jobFolder, 'outputs'),
      });
    }
  });

  test('job driver sees no worker credentials', async () => {
    const job = createTestJob({ fileCount: 2, script: ENVIRONMENT_SCRIPT });

    await runJob(job);

    const rows = readRows(job).map((line) => JSON.parse(line) as EnvironmentRow);
    expect(rows).toHaveLength(2);
    const row = rows[0];
    if (process.platform !== 'linux') {
      expect(row.driver).toBeNull();
      return;
    }
    expect(row.driver).not.toBeNull();
    expect(row.driver).toContain('PATH');
    expect(row.driver).toContain('OMP_NUM_THREADS');
    for (const name of Object.keys(WORKER_ONLY)) expect(row.driver).not.toContain(name);
    // The job's variables go to the Python processes only.
    expect(row.driver).not.toContain('STATE_DIR');
  });
});

describe('runnerChildEnvironment', () => {
  test('passes the names the worker lists', () => {
    const parent = { AMLBATCH_PASS_ENVIRONMENT: 'HF_HOME, TORCH_HOME', HF_HOME: '/models', TORCH_HOME: '/torch', OTHER: 'x' };

    const once = runnerChildEnvironment(parent);

    expect(once).toEqual({ AMLBATCH_PASS_ENVIRONMENT: 'HF_HOME,TORCH_HOME', HF_HOME: '/models', TORCH_HOME: '/torch' });
    expect(runnerChildEnvironment(once)).toEqual(once);
  });

  test('keeps secrets meant for entry scripts', () => {
    expect(runnerChildEnvironment({ AMLBATCH_SECRET_MODEL_SIGNING_KEY: 'k', AMLBATCH_PYTHON: '/p' })).toEqual({ AMLBATCH_SECRET_MODEL_SIGNING_KEY: 'k' });
  });

  test.each([
    'TEMPORAL_API_KEY',
    'TEMPORAL_TLS_CLIENT_KEY_DATA',
    'AZURE_CLIENT_SECRET',
    'AZURE_FEDERATED_TOKEN_FILE',
    'AZUREML_RUN_TOKEN',
    'AMLBATCH_PYTHON',
    'MSI_ENDPOINT',
    'IDENTITY_ENDPOINT',
    'IMDS_ENDPOINT',
    'DATABASE_URL',
    'PYTHON_INDEX_TOKEN',
    'PYTHON_KEYRING_PASSWORD',
  ])('drops %s', (name) => {
    expect(runnerChildEnvironment({ [name]: 'value', PATH: '/usr/bin' })).toEqual({ PATH: '/usr/bin' });
  });

  test.each([
    ['PATH', '/usr/local/bin:/usr/bin'],
    ['HOME', '/home/scorer'],
    ['LANG', 'C.UTF-8'],
    ['LC_ALL', 'C.UTF-8'],
    ['TMPDIR', '/var/tmp'],
    ['PYTHONPATH', '/opt/lib'],
    ['PYTHONUTF8', '1'],
    ['VIRTUAL_ENV', '/opt/venv'],
    ['LD_LIBRARY_PATH', '/usr/local/cuda/lib64'],
    ['CUDA_VISIBLE_DEVICES', '0'],
    ['REQUESTS_CA_BUNDLE', '/etc/ssl/certs/ca-certificates.crt'],
    ['HTTPS_PROXY', 'http://proxy.example:3128'],
    ['https_proxy', 'proxy.example:3128'],
    ['NO_PROXY', 'localhost,127.0.0.1'],
  ])('keeps %s', (name, value) => {
    expect(runnerChildEnvironment({ [name]: value })).toEqual({ [name]: value });
  });

  test.each([
    ['HTTPS_PROXY', 'http://scorer:password@proxy.example:3128'],
    ['http_proxy', 'scorer:password@proxy.example:3128'],
    ['ALL_PROXY', 'socks5://token@proxy.example:1080'],
  ])('drops %s with credentials', (name, value) => {
    expect(runnerChildEnvironment({ [name]: value })).toEqual({});
  });

  test('proxy path with @ is kept', () => {
    const environment = { HTTP_PROXY: 'http://proxy.example:3128/route@edge' };
    expect(runnerChildEnvironment(environment)).toEqual(environment);
  });

  test('result filtered again is unchanged', () => {
    const once = runnerChildEnvironment({ ...process.env, ...WORKER_ONLY, PYTHONPATH: '/opt/lib' });
    expect(runnerChildEnvironment(once)).toEqual(once);
    expect(once.PYTHONPATH).toBe('/opt/lib');
  });
});
