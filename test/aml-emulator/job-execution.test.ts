/**
 * Jobs that the AML emulator runs for real: the sample scoring package over PNG digits from Azurite, a job whose
 * init() fails, a job canceled by another client, and an injected failure.
 */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { projectRoot } from '../../common/project-paths';
import {
  describeWithSpec,
  isSubsequence,
  listBlobNames,
  pipelineJobBody,
  pollJobToEnd,
  readBlobText,
  registerScoringAssets,
  startHarness,
  stopHarness,
  uploadFolder,
  type Harness,
} from './emulator-harness';

const SCORING_FOLDER = path.join(projectRoot(), 'scoring');
const DIGITS_FOLDER = path.join(projectRoot(), 'samples', 'digits');
const SECRETS_FILE = path.join(projectRoot(), '.amlbatch', 'secrets.json');

/** Files of the scoring package a job needs: the entry script, its package and the signed model. */
function isScoringFile(relativePath: string): boolean {
  return relativePath === 'score.py' || /^amlbatch_scoring\/[^/]+\.py$/.test(relativePath) || relativePath.startsWith('model/');
}

/** Relative paths of the first `count` sample images of `digit`, e.g. `3/1029.png`. */
function digitFiles(digit: number, count: number): string[] {
  return readdirSync(path.join(DIGITS_FOLDER, String(digit)))
    .sort()
    .slice(0, count)
    .map((file) => `${digit}/${file}`);
}

/** Writes `script` as score.py into a new temporary folder and returns the folder. */
function scriptFolder(script: string): string {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-emulator-script-'));
  writeFileSync(path.join(folder, 'score.py'), script);
  return folder;
}

describeWithSpec('AML emulator job execution', () => {
  let harness: Harness;
  let rg: string;
  let ws: string;
  let container: string;

  beforeAll(async () => {
    harness = await startHarness({ statusStepDelayMs: 300 });
    rg = harness.resourceGroup;
    ws = harness.workspace;
    container = harness.emulator.defaultDatastore.containerName;
  });

  afterAll(async () => {
    await stopHarness(harness);
  });

  afterEach(() => {
    expect(harness.emulator.validationErrors).toEqual([]);
  });

  const logText = (jobName: string, file: string): Promise<string> => {
    const logs = harness.emulator.jobLogLocation(jobName);
    return readBlobText(harness.azurite, logs.container, `${logs.blobPath}/${file}`);
  };

  test('parallel job scores digits end to end', async () => {
    const signingKey = (JSON.parse(readFileSync(SECRETS_FILE, 'utf8')) as Record<string, string>)['model-signing-key'];
    const codePrefix = 'LocalUpload/5c0e1d/scoring';
    await uploadFolder(harness.azurite, container, codePrefix, SCORING_FOLDER, isScoringFile);
    const inputFiles = [0, 3, 7].flatMap((digit) => digitFiles(digit, 2)).sort();
    await uploadFolder(harness.azurite, container, 'inputs/digits-run', DIGITS_FOLDER, (relative) => inputFiles.includes(relative));
    const { componentId } = await registerScoringAssets(
      harness,
      { code: 'scoring-code', component: 'score-digits', version: '1', codeBlobPrefix: codePrefix },
      { maxConcurrencyPerInstance: 2 },
    );
    await harness.client.dataVersions.createOrUpdate(rg, ws, 'digits-input', '1', {
      properties: { dataType: 'uri_folder', dataUri: 'azureml://datastores/workspaceblobstore/paths/inputs/digits-run/' },
    });
    const body = pipelineJobBody(harness.emulator, componentId, {
      inputFolder: 'inputs/digits-run',
      outputFile: 'outputs/digits-run/scores.jsonl',
      environmentVariables: { AMLBATCH_SECRET_MODEL_SIGNING_KEY: signingKey },
    });

    const created = await harness.client.jobs.createOrUpdate(rg, ws, 'digits-job', body);
    const observed = await pollJobToEnd(harness, 'digits-job');

    const history = harness.emulator.jobStatusHistory('digits-job');
    expect(created.properties.status).toBe('NotStarted');
    expect(history).toEqual(['NotStarted', 'Queued', 'Preparing', 'Running', 'Finalizing', 'Completed']);
    expect(isSubsequence(observed, history)).toBe(true);
    expect(observed.at(-1)).toBe('Completed');

    const rows = (await readBlobText(harness.azurite, container, 'outputs/digits-run/scores.jsonl'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { path: string; label: number | null; confidence: number | null });
    expect(rows.map((row) => row.path).sort()).toEqual(inputFiles);
    expect(rows.every((row) => typeof row.label === 'number' && typeof row.confidence === 'number')).toBe(true);

    const logs = harness.emulator.jobLogLocation('digits-job');
    const logFiles = (await listBlobNames(harness.azurite, logs.container, `${logs.blobPath}/`)).map((name) => name.slice(logs.blobPath.length + 1));
    expect(logFiles).toEqual(
      expect.arrayContaining(['job_result.txt', 'job_error.txt', 'readme.txt', 'sys/job_report/processed_mini-batches.csv', 'user/stdout/node_0/process000.txt']),
    );
    expect(await logText('digits-job', 'job_result.txt')).toMatch(/^Job digits-job completed\./);
    const report = (await logText('digits-job', 'sys/job_report/processed_mini-batches.csv')).trim().split('\n');
    expect(report).toHaveLength(1 + 3);
    expect(report.slice(1).every((row) => row.split(',')[1] === 'success')).toBe(true);
    for (const file of logFiles) expect(await logText('digits-job', file)).not.toContain(signingKey);
  });

  test('failing init() fails job with traceback', async () => {
    const folder = scriptFolder(
      [
        'def init():',
        '    raise RuntimeError("model store unreachable: check the MODEL_STORE setting")',
        '',
        'def run(mini_batch):',
        '    return [str(item) for item in mini_batch]',
        '',
      ].join('\n'),
    );
    await uploadFolder(harness.azurite, container, 'LocalUpload/1f/init-fails', folder);
    const inputFiles = digitFiles(1, 2);
    await uploadFolder(harness.azurite, container, 'inputs/init-fails', DIGITS_FOLDER, (relative) => inputFiles.includes(relative));
    const { componentId } = await registerScoringAssets(harness, { code: 'init-fails-code', component: 'init-fails', version: '1', codeBlobPrefix: 'LocalUpload/1f/init-fails' });

    await harness.client.jobs.createOrUpdate(rg, ws, 'init-fails-job', pipelineJobBody(harness.emulator, componentId, { inputFolder: 'inputs/init-fails', outputFile: 'outputs/init-fails/scores.jsonl' }));
    const observed = await pollJobToEnd(harness, 'init-fails-job');

    const result = await logText('init-fails-job', 'job_result.txt');
    expect(observed.at(-1)).toBe('Failed');
    expect(harness.emulator.jobStatusHistory('init-fails-job')).toEqual(['NotStarted', 'Queued', 'Preparing', 'Running', 'Finalizing', 'Failed']);
    expect(result).toMatch(/^Job init-fails-job failed\./);
    expect(result).toContain('Traceback (most recent call last)');
    expect(result).toContain('RuntimeError: model store unreachable: check the MODEL_STORE setting');
    expect(result).toContain('Where to look: logs/job_error.txt');
  });

  test('externally canceled job ends Canceled', async () => {
    const folder = scriptFolder(['import time', '', 'def init():', '    pass', '', 'def run(mini_batch):', '    time.sleep(60)', '    return list(mini_batch)', ''].join('\n'));
    await uploadFolder(harness.azurite, container, 'LocalUpload/2c/slow', folder);
    const inputFiles = digitFiles(2, 2);
    await uploadFolder(harness.azurite, container, 'inputs/slow', DIGITS_FOLDER, (relative) => inputFiles.includes(relative));
    const { componentId } = await registerScoringAssets(harness, { code: 'slow-code', component: 'slow', version: '1', codeBlobPrefix: 'LocalUpload/2c/slow' }, { retrySettings: { max_retries: 0, timeout: 120 } });
    await harness.client.jobs.createOrUpdate(rg, ws, 'canceled-job', pipelineJobBody(harness.emulator, componentId, { inputFolder: 'inputs/slow', outputFile: 'outputs/slow/scores.jsonl' }));

    const waiting = new Set(['NotStarted', 'Queued', 'Preparing']);
    for (let poll = 0; poll < 300 && waiting.has(harness.emulator.jobStatus('canceled-job') ?? ''); poll += 1) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(harness.emulator.jobStatus('canceled-job')).toBe('Running');
    harness.emulator.cancelJobExternally('canceled-job');
    const observed = await pollJobToEnd(harness, 'canceled-job');

    expect(observed.at(-1)).toBe('Canceled');
    expect(harness.emulator.jobStatusHistory('canceled-job').slice(-3)).toEqual(['Running', 'CancelRequested', 'Canceled']);
    expect(await logText('canceled-job', 'job_result.txt')).toMatch(/^Job canceled-job was canceled\./);
  });

  test('injected failure fails next job', async () => {
    const { componentId } = await registerScoringAssets(harness, { code: 'injected-code', component: 'injected', version: '1', codeBlobPrefix: 'LocalUpload/3d/none' });
    harness.emulator.failNextJob('node 10.0.0.4 lost: the compute node was preempted');

    await harness.client.jobs.createOrUpdate(rg, ws, 'injected-failure-job', pipelineJobBody(harness.emulator, componentId, { inputFolder: 'inputs/none', outputFile: 'outputs/none/s.jsonl' }));
    const observed = await pollJobToEnd(harness, 'injected-failure-job');

    expect(observed.at(-1)).toBe('Failed');
    expect(await logText('injected-failure-job', 'job_result.txt')).toContain('Reason: node 10.0.0.4 lost: the compute node was preempted');
  });
});
