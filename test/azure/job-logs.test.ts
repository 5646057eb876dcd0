import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { JobBase } from '@azure/arm-machinelearning';
import { AzureBackend } from '../../activities/backends/azure/azure-backend';
import {
  describeJobFailure,
  noResultReasonFromLogs,
  parseCsv,
  parseJobResult,
  readJobLogTexts,
  summarizeJobLogs,
  summarizeMiniBatchReport,
  type JobLogSummary,
} from '../../activities/backends/azure/job-logs';
import { StageError } from '../../activities/errors';
import type { AzureStageSettings } from '../../activities/types';
import {
  describeWithSpec,
  pipelineJobBody,
  pollJobToEnd,
  readBlobText,
  registerScoringAssets,
  startHarness,
  stopHarness,
  testCredential,
  uploadFolder,
  type ComponentSettings,
  type Harness,
} from '../aml-emulator/emulator-harness';

// Failure summaries from an Azure ML parallel job's logs: the CSV parser and the summary on text fixtures, then
// jobs run by the AML emulator over Azurite, whose logs the Azure backend reads back. The emulator tests also cover
// the emulator's partial output of failed and canceled jobs and its repeated mini-batch fault.

const LOGS = 'azureml://datastores/workspaceartifactstore/paths/ExperimentRun/dcid.job-1/logs/';

/** The header that the AML emulator writes in processed_mini-batches.csv. */
const REPORT_HEADER = 'mini_batch,result,items,rows,attempts,error_type,error_message';

describe('parseCsv', () => {
  test('plain rows with LF, CRLF and CR line ends', () => {
    expect(parseCsv('a,b\n1,2\r\n3,4\r5,6')).toEqual([
      ['a', 'b'],
      ['1', '2'],
      ['3', '4'],
      ['5', '6'],
    ]);
  });

  test('final line break adds no row', () => {
    expect(parseCsv('a,b\n1,2\n')).toEqual([
      ['a', 'b'],
      ['1', '2'],
    ]);
  });

  test('quoted cells keep commas, quotes and line breaks', () => {
    const text = 'id,message\n1,"cannot score ""a.png"", ""b.png"""\n2,"line one\nline two\r\nline three"\n3,"a,b"';

    expect(parseCsv(text)).toEqual([
      ['id', 'message'],
      ['1', 'cannot score "a.png", "b.png"'],
      ['2', 'line one\nline two\r\nline three'],
      ['3', 'a,b'],
    ]);
  });

  test('empty cells, quoted or not', () => {
    expect(parseCsv('a,,"",d,\n,')).toEqual([
      ['a', '', '', 'd', ''],
      ['', ''],
    ]);
  });

  test('byte order mark is skipped', () => {
    expect(parseCsv('\ufeffmini_batch,result\n0,success')).toEqual([
      ['mini_batch', 'result'],
      ['0', 'success'],
    ]);
  });

  test('blank line is a row with one empty cell', () => {
    expect(parseCsv('a\n\nb')).toEqual([['a'], [''], ['b']]);
  });

  test('empty text has no rows', () => {
    expect(parseCsv('')).toEqual([]);
  });

  test('malformed quoting is read as Python reads it', () => {
    expect(parseCsv('ab"c,"de"f,"open\nend')).toEqual([['ab"c', 'def', 'open\nend']]);
  });
});

describe('summarizeMiniBatchReport', () => {
  test('counts mini-batches that never succeeded, by last error type', () => {
    const report = [
      REPORT_HEADER,
      '0,success,2,2,1,,',
      '1,failure,2,0,3,ValueError,"cannot score ""a2.png"", ""a3.png"""',
      '2,failure,2,0,1,TimeoutError,first attempt timed out',
      '2,success,2,2,2,,',
      '3,failure,2,0,3,TimeoutError,"run() did not return\nwithin 60 s"',
      '4,failure,1,0,1,,',
      '',
    ].join('\n');

    const summary = summarizeMiniBatchReport(report);

    expect(summary.failedMiniBatches).toBe(3);
    expect(summary.failuresByErrorType).toEqual({ ValueError: 1, TimeoutError: 1, unknown: 1 });
    expect(summary.errors).toEqual([
      'mini-batch 1: ValueError: cannot score "a2.png", "a3.png"',
      'mini-batch 3: TimeoutError: run() did not return within 60 s',
      'mini-batch 4: no error recorded',
    ]);
  });

  test('last failure of a mini-batch gives its error type', () => {
    const report = [REPORT_HEADER, '5,failure,2,0,1,TimeoutError,slow', '5,failure,2,0,2,MemoryError,out of memory'].join('\n');

    expect(summarizeMiniBatchReport(report).failuresByErrorType).toEqual({ MemoryError: 1 });
  });

  test('other column names are recognized', () => {
    const report = ['Mini Batch Id,Node Id,Status,Error Type,Error Message', '7,node_1,Failed,KeyError,label', '8,node_1,Succeeded,,'].join(
      '\r\n',
    );

    const summary = summarizeMiniBatchReport(report);

    expect(summary.failedMiniBatches).toBe(1);
    expect(summary.errors).toEqual(['mini-batch 7: KeyError: label']);
  });

  test('rows without a result column fail when they carry an error', () => {
    const report = ['error_type,error_message', ',', 'OSError,disk full', 'OSError,disk full'].join('\n');

    const summary = summarizeMiniBatchReport(report);

    expect(summary.failedMiniBatches).toBe(2);
    expect(summary.failuresByErrorType).toEqual({ OSError: 2 });
    expect(summary.errors).toEqual(['row 2: OSError: disk full', 'row 3: OSError: disk full']);
  });

  test('report with only a header has no failures', () => {
    expect(summarizeMiniBatchReport(`${REPORT_HEADER}\n`)).toEqual({ failedMiniBatches: 0, failuresByErrorType: {}, errors: [] });
  });
});

describe('parseJobResult', () => {
  test('failed job gives its Reason line', () => {
    const text = [
      'Job job-1 failed.',
      'Reason: error threshold exceeded: 4 failed items > threshold 2.',
      '',
      'Mini-batches: 3 succeeded, 2 failed, 5 in total.',
    ].join('\n');

    expect(parseJobResult(text)).toEqual({
      statusLine: 'Job job-1 failed.',
      outcome: 'failed',
      reason: 'error threshold exceeded: 4 failed items > threshold 2.',
    });
  });

  test('unlabelled reason is the first line naming an error', () => {
    const text = 'The job failed.\nItems: 5 succeeded, 2 failed.\nNoResultToAppendError: There is no succeeded mini batch item returned from run()\n';

    expect(parseJobResult(text)).toEqual({
      statusLine: 'The job failed.',
      outcome: 'failed',
      reason: 'NoResultToAppendError: There is no succeeded mini batch item returned from run()',
    });
  });

  test('completed job has no reason', () => {
    const text = 'Job job-1 completed.\n\nMini-batches: 5 succeeded, 0 failed, 5 in total.\nItems: 10 succeeded, 0 failed, 10 in total.\n';

    expect(parseJobResult(text)).toEqual({ statusLine: 'Job job-1 completed.', outcome: 'completed' });
  });

  test('cancelled spelling is read as canceled', () => {
    expect(parseJobResult('Job job-1 was cancelled.\nReason: cancel requested').outcome).toBe('canceled');
  });

  test('empty file has no status line', () => {
    expect(parseJobResult('\n \n')).toEqual({});
  });
});

describe('job log summary', () => {
  const failedJobTexts = {
    jobResult: 'Job job-1 failed.\nReason: error threshold exceeded: 6 failed items > threshold 2.\n',
    jobError: 'Mini-batch 1 failed after 3 attempt(s): TimeoutError: slow\n',
    miniBatchReport: [
      REPORT_HEADER,
      '0,success,2,2,1,,',
      '1,failure,2,0,3,TimeoutError,run() did not return within 60 s',
      '2,failure,2,0,3,ValueError,bad pixel',
      '3,failure,2,0,3,TimeoutError,run() did not return within 60 s',
    ].join('\n'),
  };

  test('failed job summary', () => {
    const summary = summarizeJobLogs('job-1', LOGS, failedJobTexts);

    expect(summary).toEqual<JobLogSummary>({
      jobName: 'job-1',
      statusLine: 'Job job-1 failed.',
      outcome: 'failed',
      reason: 'error threshold exceeded: 6 failed items > threshold 2.',
      failedMiniBatches: 3,
      failuresByErrorType: { TimeoutError: 2, ValueError: 1 },
      firstErrors: [
        'mini-batch 1: TimeoutError: run() did not return within 60 s',
        'mini-batch 2: ValueError: bad pixel',
        'mini-batch 3: TimeoutError: run() did not return within 60 s',
      ],
      logsLocation: LOGS,
      missingFiles: [],
      truncatedFiles: [],
    });
  });

  test('no-result reason names the most frequent error type', () => {
    const reason = noResultReasonFromLogs(summarizeJobLogs('job-1', LOGS, failedJobTexts));

    expect(reason).toEqual({
      errorType: 'TimeoutError',
      message: `job job-1 failed: error threshold exceeded: 6 failed items > threshold 2.; 3 mini-batches failed (TimeoutError 2, ValueError 1); see ${LOGS}`,
    });
  });

  test('failure description lists errors and the logs to read', () => {
    expect(describeJobFailure(summarizeJobLogs('job-1', LOGS, failedJobTexts))).toBe(
      'error threshold exceeded: 6 failed items > threshold 2.; 3 mini-batches failed (TimeoutError 2, ValueError 1); ' +
        'first errors: mini-batch 1: TimeoutError: run() did not return within 60 s | mini-batch 2: ValueError: bad pixel | ' +
        `mini-batch 3: TimeoutError: run() did not return within 60 s; read logs/job_result.txt and logs/job_error.txt in ${LOGS}`,
    );
  });

  test('job without logs is summarized as such', () => {
    const summary = summarizeJobLogs('job-1', LOGS, {});

    expect(summary.missingFiles).toEqual(['logs/job_result.txt', 'logs/job_error.txt', 'logs/sys/job_report/processed_mini-batches.csv']);
    expect(summary.failedMiniBatches).toBe(0);
    expect(summary.firstErrors).toEqual([]);
    expect(noResultReasonFromLogs(summary)).toEqual({ message: `job job-1 ended: no reason found (the job has no logs); see ${LOGS}` });
    expect(describeJobFailure(summary)).toBe(
      'no reason found (the job has no logs); the job may have failed before it ran, so check it in Azure ML studio; ' + `logs: ${LOGS}`,
    );
  });

  test('init failure takes its errors from job_error.txt', () => {
    const summary = summarizeJobLogs('job-1', LOGS, {
      jobResult: 'Job job-1 failed.\nReason: init() in entry script score.py raised RuntimeError: model store unreachable\n',
      jobError: [
        'Job error: init() in entry script score.py raised RuntimeError: model store unreachable',
        'Traceback (most recent call last):',
        '  File "score.py", line 2, in init',
        'RuntimeError: model store unreachable',
        '',
      ].join('\n'),
      miniBatchReport: `${REPORT_HEADER}\n`,
    });

    expect(summary.failedMiniBatches).toBe(0);
    expect(summary.firstErrors).toEqual([
      'Job error: init() in entry script score.py raised RuntimeError: model store unreachable',
      'RuntimeError: model store unreachable',
    ]);
    expect(noResultReasonFromLogs(summary)).toEqual({
      message: `job job-1 failed: init() in entry script score.py raised RuntimeError: model store unreachable; see ${LOGS}`,
    });
  });

  test('failures without an error type give no errorType', () => {
    const summary = summarizeJobLogs('job-1', LOGS, { miniBatchReport: `${REPORT_HEADER}\n0,failure,2,0,1,,lost\n` });

    expect(summary.failuresByErrorType).toEqual({ unknown: 1 });
    expect(noResultReasonFromLogs(summary)).toEqual({
      message: `job job-1 ended: no reason found (logs/job_result.txt is missing); 1 mini-batch failed (unknown 1); see ${LOGS}`,
    });
  });

  test('long reason is cut to one short line', () => {
    const summary = summarizeJobLogs('job-1', LOGS, { jobResult: `Job job-1 failed.\nReason: ${'x'.repeat(1000)}\n` });

    expect(summary.reason).toHaveLength(300);
    expect(summary.reason?.endsWith('...')).toBe(true);
  });
});

/** Writes `script` as score.py into a new temporary folder and returns the folder. */
function scriptFolder(script: string): string {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-job-logs-script-'));
  writeFileSync(path.join(folder, 'score.py'), script);
  return folder;
}

/** Writes text files a0.txt, a1.txt, ... into a new temporary folder and returns the folder. */
function inputFolder(count: number): string {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-job-logs-input-'));
  for (let index = 0; index < count; index += 1) writeFileSync(path.join(folder, `a${index}.txt`), `item ${index}`);
  return folder;
}

describeWithSpec('job logs of emulator jobs', () => {
  let harness: Harness;
  let container: string;
  let backend: AzureBackend;
  let settings: AzureStageSettings;

  beforeAll(async () => {
    harness = await startHarness({ statusStepDelayMs: 50 });
    container = harness.emulator.defaultDatastore.containerName;
    backend = new AzureBackend({
      endpoints: {
        armEndpoint: harness.emulator.endpoint,
        blobEndpointTemplate: harness.azurite.blobEndpoint.replace(/\/devstoreaccount1$/, '/{account}'),
        caCertificatePem: harness.emulator.certPem,
        verifyKeyVaultChallengeResource: false,
        httpRetries: 0,
      },
      resultsRoot: mkdtempSync(path.join(os.tmpdir(), 'amlbatch-job-logs-results-')),
      credential: testCredential,
      environment: {},
      pollIntervalMs: { min: 50, max: 200 },
    });
    settings = {
      compute: 'cpu-cluster',
      datastore: { name: 'unused_store', accountName: harness.azurite.accountName, containerName: 'unused' },
      workspace: {
        subscriptionId: harness.emulator.subscriptionId,
        resourceGroup: harness.resourceGroup,
        workspaceName: harness.workspace,
      },
    };
  });

  afterAll(async () => {
    await stopHarness(harness);
  });

  afterEach(() => {
    expect(harness.emulator.validationErrors).toEqual([]);
  });

  /**
   * Uploads the script and `itemCount` input files, registers the assets and submits a job over them that writes
   * its rows to `outputs/<jobName>/scores.txt` of the default datastore. `node` overrides settings of the parallel node.
   */
  async function submitJob(
    jobName: string,
    script: string,
    itemCount: number,
    node: Record<string, unknown> = {},
    component: Partial<ComponentSettings> = {},
  ): Promise<void> {
    const codePrefix = `LocalUpload/${jobName}/code`;
    await uploadFolder(harness.azurite, container, codePrefix, scriptFolder(script));
    await uploadFolder(harness.azurite, container, `inputs/${jobName}`, inputFolder(itemCount));
    const { componentId } = await registerScoringAssets(
      harness,
      { code: `${jobName}-code`, component: `${jobName}-component`, version: '1', codeBlobPrefix: codePrefix },
      component,
    );
    const body = pipelineJobBody(harness.emulator, componentId, {
      inputFolder: `inputs/${jobName}`,
      outputFile: `outputs/${jobName}/scores.txt`,
      miniBatchSize: 2,
      ...(component.environmentVariables === undefined ? {} : { environmentVariables: component.environmentVariables }),
    }) as unknown as { properties: { jobs: { score: Record<string, unknown> } } };
    Object.assign(body.properties.jobs.score, node);
    await harness.client.jobs.createOrUpdate(harness.resourceGroup, harness.workspace, jobName, body as unknown as JobBase);
  }

  async function outputRows(jobName: string): Promise<string[]> {
    const text = await readBlobText(harness.azurite, container, `outputs/${jobName}/scores.txt`);
    return text.split('\n').filter((row) => row !== '');
  }

  test('error threshold failure is summarized from the logs', async () => {
    const jobName = 'threshold-job';
    await submitJob(
      jobName,
      [
        'import os, time',
        '',
        'def init():',
        '    pass',
        '',
        'def run(mini_batch):',
        '    names = [os.path.basename(p) for p in mini_batch]',
        '    if "a2.txt" in names:',
        '        raise ValueError(\'cannot score "a2.txt", "a3.txt"\\nbad header\')',
        '    if "a6.txt" in names:',
        '        time.sleep(30)',
        '    return names',
        '',
      ].join('\n'),
      10,
      { error_threshold: 2, retry_settings: { max_retries: 0, timeout: 1 } },
    );
    expect((await pollJobToEnd(harness, jobName)).at(-1)).toBe('Failed');

    const summary = await backend.readJobLogSummary(settings, jobName);

    const logs = `azureml://datastores/workspaceartifactstore/paths/ExperimentRun/dcid.${jobName}/logs/`;
    expect(summary.statusLine).toBe(`Job ${jobName} failed.`);
    expect(summary.outcome).toBe('failed');
    expect(summary.reason).toMatch(/^error threshold exceeded: 4 failed items > threshold 2\. /);
    expect(summary.failedMiniBatches).toBe(2);
    expect(summary.failuresByErrorType).toEqual({ ValueError: 1, TimeoutError: 1 });
    expect(summary.firstErrors[0]).toBe('mini-batch 1: ValueError: cannot score "a2.txt", "a3.txt" bad header');
    expect(summary.firstErrors[1]).toMatch(/^mini-batch 3: TimeoutError: run\(\) did not return within runInvocationTimeout \(1 s\)/);
    expect(summary.firstErrors).toHaveLength(2);
    expect(summary.logsLocation).toBe(logs);
    expect(summary.missingFiles).toEqual([]);
    expect(summary.truncatedFiles).toEqual([]);

    const reason = noResultReasonFromLogs(summary);
    expect(reason.errorType).toBe('TimeoutError');
    expect(reason.message).toMatch(new RegExp(`^job ${jobName} failed: error threshold exceeded: 4 failed items > threshold 2\\. `));
    expect(reason.message.endsWith(`; 2 mini-batches failed (TimeoutError 1, ValueError 1); see ${logs}`)).toBe(true);

    // The rows of the mini-batches that succeeded before the job failed are in the job's output.
    expect((await outputRows(jobName)).sort()).toEqual(['a0.txt', 'a1.txt', 'a4.txt', 'a5.txt']);
  });

  test('waitForJob error carries the log summary', async () => {
    const jobName = 'value-error-job';
    await submitJob(
      jobName,
      ['def init():', '    pass', '', 'def run(mini_batch):', '    raise ValueError("model rejects every input")', ''].join('\n'),
      2,
      { retry_settings: { max_retries: 0, timeout: 60 } },
    );

    const failure = await backend
      .waitForJob(
        { backend: 'azure', azure: settings, jobName },
        { pollIntervalMs: 50, signal: new AbortController().signal, isCancelRequested: () => false, onPoll: () => undefined },
      )
      .then(
        () => undefined,
        (error: unknown) => error,
      );

    expect(failure).toBeInstanceOf(StageError);
    const error = failure as StageError;
    expect(error.kind).toBe('JobFailed');
    expect(error.message).toContain(`job ${jobName} failed: no mini-batch succeeded, so append_row has no rows to write`);
    expect(error.message).toContain('1 mini-batch failed (ValueError 1); first errors: mini-batch 0: ValueError: model rejects every input');
    expect(error.message).toContain(
      `read logs/job_result.txt and logs/job_error.txt in azureml://datastores/workspaceartifactstore/paths/ExperimentRun/dcid.${jobName}/logs/`,
    );
    expect(error.details).toEqual({
      jobName,
      logs: `azureml://datastores/workspaceartifactstore/paths/ExperimentRun/dcid.${jobName}/logs/`,
      failedMiniBatches: 1,
      failuresByErrorType: { ValueError: 1 },
    });
    // A job that appended no rows leaves no output file.
    await expect(readBlobText(harness.azurite, container, `outputs/${jobName}/scores.txt`)).rejects.toMatchObject({ statusCode: 404 });
  });

  test('unknown job has no log files', async () => {
    const summary = await backend.readJobLogSummary(settings, 'never-submitted-job');

    expect(summary.missingFiles).toEqual(['logs/job_result.txt', 'logs/job_error.txt', 'logs/sys/job_report/processed_mini-batches.csv']);
    expect(summary.statusLine).toBeUndefined();
    expect(summary.failedMiniBatches).toBe(0);
  });

  test('logs beyond the read limits are cut at whole rows', async () => {
    const artifacts = harness.azurite.serviceClient().getContainerClient(harness.emulator.artifactDatastore.containerName);
    const prefix = 'ExperimentRun/dcid.large-logs-job/logs';
    const jobResult = `Job large-logs-job failed.\nReason: ${'x'.repeat(200)}\n`;
    const rows = Array.from({ length: 10 }, (_, index) => `${index},failure,2,0,1,ValueError,bad item ${index}\n`);
    const report = `${REPORT_HEADER}\n${rows.join('')}`;
    await artifacts.getBlockBlobClient(`${prefix}/job_result.txt`).upload(jobResult, Buffer.byteLength(jobResult));
    await artifacts.getBlockBlobClient(`${prefix}/sys/job_report/processed_mini-batches.csv`).upload(report, Buffer.byteLength(report));

    // 200 bytes of the report end inside its fourth data row.
    const texts = await readJobLogTexts(artifacts, 'large-logs-job', 'Storage Blob Data Reader', { textBytes: 100, reportBytes: 200 });

    expect(texts.jobResult).toBe(jobResult.slice(0, 100));
    expect(texts.jobError).toBeUndefined();
    expect(texts.miniBatchReport).toBe(`${REPORT_HEADER}\n${rows.slice(0, 3).join('')}`);
    expect(texts.truncatedFiles).toEqual(['logs/job_result.txt', 'logs/sys/job_report/processed_mini-batches.csv']);
    expect(summarizeJobLogs('large-logs-job', 'logs', texts).failedMiniBatches).toBe(3);
  });

  test('logs of exactly the limit are not truncated', async () => {
    const artifacts = harness.azurite.serviceClient().getContainerClient(harness.emulator.artifactDatastore.containerName);
    const jobResult = 'Job exact-logs-job completed.\n';
    await artifacts.getBlockBlobClient('ExperimentRun/dcid.exact-logs-job/logs/job_result.txt').upload(jobResult, jobResult.length);

    const texts = await readJobLogTexts(artifacts, 'exact-logs-job', 'Storage Blob Data Reader', { textBytes: jobResult.length, reportBytes: 10 });

    expect(texts.jobResult).toBe(jobResult);
    expect(texts.truncatedFiles).toEqual([]);
  });

  test('canceled job uploads the rows written so far', async () => {
    const jobName = 'canceled-partial-job';
    const stateDir = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-job-logs-state-'));
    const marker = path.join(stateDir, 'second-batch-started');
    await submitJob(
      jobName,
      [
        'import os, time',
        '',
        'def init():',
        '    pass',
        '',
        'def run(mini_batch):',
        '    names = [os.path.basename(p) for p in mini_batch]',
        '    if "a2.txt" in names:',
        '        open(os.path.join(os.environ["STATE_DIR"], "second-batch-started"), "w").close()',
        '        time.sleep(120)',
        '    return names',
        '',
      ].join('\n'),
      4,
      { retry_settings: { max_retries: 0, timeout: 180 } },
      { environmentVariables: { STATE_DIR: stateDir } },
    );
    for (let poll = 0; poll < 600 && !existsSync(marker); poll += 1) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(existsSync(marker)).toBe(true);

    harness.emulator.cancelJobExternally(jobName);

    expect((await pollJobToEnd(harness, jobName)).at(-1)).toBe('Canceled');
    expect(harness.emulator.jobStatusHistory(jobName).slice(-3)).toEqual(['Running', 'CancelRequested', 'Canceled']);
    expect(await outputRows(jobName)).toEqual(['a0.txt', 'a1.txt']);
    const summary = await backend.readJobLogSummary(settings, jobName);
    expect(summary.outcome).toBe('canceled');
    expect(summary.reason).toBe('cancel requested');
  });

  test('repeated mini-batch fault duplicates its rows', async () => {
    const jobName = 'repeat-job';
    harness.emulator.repeatMiniBatchesOfNextJob([1]);
    await submitJob(jobName, ['import os', '', 'def init():', '    pass', '', 'def run(mini_batch):', '    return [os.path.basename(p) for p in mini_batch]', ''].join('\n'), 3);

    expect((await pollJobToEnd(harness, jobName)).at(-1)).toBe('Completed');

    expect((await outputRows(jobName)).sort()).toEqual(['a0.txt', 'a1.txt', 'a2.txt', 'a2.txt']);
    const logs = harness.emulator.jobLogLocation(jobName);
    const report = parseCsv(await readBlobText(harness.azurite, logs.container, `${logs.blobPath}/sys/job_report/processed_mini-batches.csv`));
    expect(report.slice(1).map((row) => [row[0], row[1]])).toEqual([
      ['0', 'success'],
      ['1', 'success'],
      ['1', 'success'],
    ]);
    const summary = await backend.readJobLogSummary(settings, jobName);
    expect(summary.outcome).toBe('completed');
    expect(summary.failedMiniBatches).toBe(0);
    expect(summary.reason).toBeUndefined();
  });

  test('repeat fault rejects invalid indexes', () => {
    expect(() => harness.emulator.repeatMiniBatchesOfNextJob([-1])).toThrow(
      'mini-batch indexes [-1] are invalid: expected repeatMiniBatches to be an array of distinct 0-based mini-batch indexes, such as [0, 3]',
    );
  });
});
