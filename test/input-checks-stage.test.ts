import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkDatasetInput, type DatasetInputCheckOptions } from '../activities/dataset-input-checks';
import { StageError } from '../activities/errors';
import {
  InvalidScoringRatesFileError,
  SCORING_RATES_FILE,
  measureScoringRate,
  readScoringRate,
  recordScoringRate,
  type ScoringRateKey,
  type ScoringRateMeasurement,
} from '../activities/ledger/scoring-rate';

// The register-dataset stage's input checks and the scoring rates file, on real files in a temporary folder.

let folder: string;

beforeEach(() => {
  folder = mkdtempSync(path.join(os.tmpdir(), 'input-checks-stage-'));
});

afterEach(() => {
  rmSync(folder, { recursive: true, force: true });
});

const KEY: ScoringRateKey = { backend: 'local', codeDirectory: '/code/scoring', entryScript: 'score.py' };

function writeManifest(entries: readonly { path: string; size: number }[]): string {
  const file = path.join(folder, 'manifest.jsonl');
  writeFileSync(file, entries.map((entry) => `${JSON.stringify(entry)}\n`).join(''));
  return file;
}

function measurement(bytesPerSecond: number, jobName = 'job-1'): ScoringRateMeasurement {
  return { bytesPerSecond, jobName, totalBytes: 1000, runSeconds: 10, processes: 1, measuredAt: '2026-01-01T00:00:10.000Z' };
}

function options(manifestPath: string, overrides: Partial<DatasetInputCheckOptions> = {}): DatasetInputCheckOptions {
  return {
    backend: 'local',
    manifestPath,
    inputFolder: '/data/images',
    checks: { programArguments: [], runInvocationTimeout: 10, miniBatchSize: 1, entryScript: KEY.entryScript, codeDirectory: KEY.codeDirectory },
    scoringRateFolder: folder,
    temporaryFolder: folder,
    ...overrides,
  };
}

async function stageErrorOf(promise: Promise<unknown>): Promise<StageError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof StageError) return error;
    throw error;
  }
  throw new Error('expected a StageError');
}

describe('measureScoringRate', () => {
  test('rate is bytes per second per process', () => {
    const rate = measureScoringRate({
      jobName: 'job-1',
      totalBytes: 8000,
      startedAt: '2026-01-01T00:00:00.000Z',
      endedAt: '2026-01-01T00:00:02.000Z',
      processCount: 4,
      miniBatches: 10,
    });

    expect(rate).toEqual({ bytesPerSecond: 1000, jobName: 'job-1', totalBytes: 8000, runSeconds: 2, processes: 4, measuredAt: '2026-01-01T00:00:02.000Z' });
  });

  test('idle processes are not counted', () => {
    const rate = measureScoringRate({
      jobName: 'job-1',
      totalBytes: 6000,
      startedAt: '2026-01-01T00:00:00.000Z',
      endedAt: '2026-01-01T00:00:03.000Z',
      processCount: 8,
      miniBatches: 2,
    });

    expect(rate?.processes).toBe(2);
    expect(rate?.bytesPerSecond).toBe(1000);
  });

  test.each([
    ['no bytes', { totalBytes: 0 }],
    ['no mini-batch', { miniBatches: 0 }],
    ['end before start', { endedAt: '2025-12-31T23:59:59.000Z' }],
    ['unparsable time', { startedAt: 'yesterday' }],
  ])('%s gives no rate', (_case, override) => {
    const job = { jobName: 'job-1', totalBytes: 100, startedAt: '2026-01-01T00:00:00.000Z', endedAt: '2026-01-01T00:00:01.000Z', processCount: 1, miniBatches: 1 };

    expect(measureScoringRate({ ...job, ...override })).toBeUndefined();
  });
});

describe('scoring rates file', () => {
  test('recorded rate is read back by key', async () => {
    await recordScoringRate(folder, KEY, measurement(500));
    await recordScoringRate(folder, { ...KEY, entryScript: 'other.py' }, measurement(7));

    expect(await readScoringRate(folder, KEY)).toEqual(measurement(500));
    expect(await readScoringRate(folder, { ...KEY, entryScript: 'other.py' })).toEqual(measurement(7));
    expect(await readScoringRate(folder, { ...KEY, backend: 'azure' })).toBeUndefined();
  });

  test('newer rate replaces the older one', async () => {
    await recordScoringRate(folder, KEY, measurement(500, 'job-1'));
    await recordScoringRate(folder, KEY, measurement(900, 'job-2'));

    expect(await readScoringRate(folder, KEY)).toEqual(measurement(900, 'job-2'));
    const stored = JSON.parse(readFileSync(path.join(folder, SCORING_RATES_FILE), 'utf8')) as { rates: unknown[] };
    expect(stored.rates).toHaveLength(1);
    expect(readdirSync(folder)).toEqual([SCORING_RATES_FILE]);
  });

  test('missing file means no rate', async () => {
    expect(await readScoringRate(path.join(folder, 'absent'), KEY)).toBeUndefined();
  });

  test('invalid file is named on read', async () => {
    writeFileSync(path.join(folder, SCORING_RATES_FILE), '{"rates": [{"backend": "local"}]}');

    await expect(readScoringRate(folder, KEY)).rejects.toThrow(InvalidScoringRatesFileError);
    await expect(readScoringRate(folder, KEY)).rejects.toThrow(`scoring rates file ${path.join(folder, SCORING_RATES_FILE)} is invalid`);
  });

  test('invalid file is replaced on record', async () => {
    writeFileSync(path.join(folder, SCORING_RATES_FILE), 'not json');

    await recordScoringRate(folder, KEY, measurement(500));

    expect(await readScoringRate(folder, KEY)).toEqual(measurement(500));
  });
});

describe('checkDatasetInput', () => {
  test('clean manifest returns no warnings', async () => {
    const manifestPath = writeManifest([{ path: 'a.png', size: 10 }]);

    expect(await checkDatasetInput(options(manifestPath))).toEqual([]);
  });

  test('errors throw InvalidInput with examples', async () => {
    const manifestPath = writeManifest([
      { path: 'a', size: 10 },
      { path: 'a/b.png', size: 10 },
    ]);
    const checks = { programArguments: ['--mini_batch_size', '4'], runInvocationTimeout: 10, miniBatchSize: 1 };

    const error = await stageErrorOf(checkDatasetInput(options(manifestPath, { checks })));

    expect(error.kind).toBe('InvalidInput');
    expect(error.message).toMatch(/^input checks of \/data\/images found 2 problems, so no dataset version was registered and nothing was submitted: /);
    expect(error.message).toContain('1) 1 name is both a file and a folder');
    expect(error.message).toContain('(affected: a is a file and also the folder of a/b.png)');
    expect(error.message).toContain('2) program arguments --mini_batch_size are flags that the Azure ML parallel runtime reads');
    expect(error.message).toContain('set miniBatchSize in the workflow input instead of --mini_batch_size');
    expect(error.details).toMatchObject({ inputFolder: '/data/images', errors: [{ code: 'file_folder_collision' }, { code: 'reserved_runtime_argument' }] });
    expect(error.details).toMatchObject({ warnings: [] });
  });

  test('extra examples are counted', async () => {
    const manifestPath = writeManifest(['p', 'q', 'r', 's', 't', 'u', 'v'].flatMap((name) => [
      { path: name, size: 1 },
      { path: `${name}/x.png`, size: 1 },
    ]));

    const error = await stageErrorOf(checkDatasetInput(options(manifestPath)));

    expect(error.message).toContain('; and 2 more)');
    expect((error.details as { errors: { examples: string[] }[] }).errors[0].examples).toHaveLength(3);
  });

  test('empty manifest is not an error', async () => {
    const manifestPath = writeManifest([]);

    expect(await checkDatasetInput(options(manifestPath))).toEqual([]);
  });

  test('warnings are trimmed for history', async () => {
    const longName = `${'d'.repeat(300)}#.png`;
    const manifestPath = writeManifest(['a#1.png', 'b#2.png', 'c#3.png', 'e#4.png', longName].map((name) => ({ path: name, size: 1 })));

    const warnings = await checkDatasetInput(options(manifestPath));

    const delimiter = warnings.find((warning) => warning.code === 'url_delimiter_in_name');
    expect(delimiter?.count).toBe(5);
    expect(delimiter?.examples).toEqual(['a#1.png', 'b#2.png', 'c#3.png']);
    const longOnly = await checkDatasetInput(options(writeManifest([{ path: longName, size: 1 }])));
    const [example] = longOnly.find((warning) => warning.code === 'url_delimiter_in_name')?.examples ?? [];
    expect(example).toHaveLength(200);
    expect(example.endsWith('…')).toBe(true);
  });

  test('measured rate enables the file-size warning', async () => {
    await recordScoringRate(folder, KEY, measurement(100));
    const manifestPath = writeManifest([
      { path: 'small.bin', size: 500 },
      { path: 'large.bin', size: 5000 },
    ]);

    const warnings = await checkDatasetInput(options(manifestPath));

    const oversized = warnings.find((warning) => warning.code === 'file_exceeds_timeout');
    expect(oversized?.examples).toEqual(['large.bin']);
    expect(oversized?.message).toContain('runInvocationTimeout 10 s');
    expect(oversized?.message).toContain('the largest, large.bin, has 4.9 KiB (5000 bytes) and needs about 50 s');
    expect(oversized?.message).toContain('The rate was measured on job job-1 (1000 bytes in 10.0 s on 1 process)');
  });

  test('other entry script rate ignored', async () => {
    await recordScoringRate(folder, { ...KEY, entryScript: 'other.py' }, measurement(1));
    const manifestPath = writeManifest([{ path: 'large.bin', size: 10 ** 9 }]);

    expect(await checkDatasetInput(options(manifestPath))).toEqual([]);
  });

  test('invalid rates file skips the size check', async () => {
    writeFileSync(path.join(folder, SCORING_RATES_FILE), 'not json');
    const manifestPath = writeManifest([{ path: 'large.bin', size: 10 ** 9 }]);

    expect(await checkDatasetInput(options(manifestPath))).toEqual([]);
  });
});
