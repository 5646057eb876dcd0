import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkInputs, checkProgramArguments, type InputCheckOptions, type InputCheckReport, type InputIssue } from '../../activities/ledger/input-checks';

let folder: string;

beforeEach(() => {
  folder = mkdtempSync(path.join(os.tmpdir(), 'input-checks-test-'));
});

afterEach(() => {
  rmSync(folder, { recursive: true, force: true });
});

function manifest(entries: readonly (string | { path: string; size: number })[]): string {
  const file = path.join(folder, 'manifest.jsonl');
  const lines = entries.map((entry) => JSON.stringify(typeof entry === 'string' ? { path: entry, size: 100 } : entry));
  writeFileSync(file, lines.map((line) => `${line}\n`).join(''));
  return file;
}

async function check(options: Omit<InputCheckOptions, 'temporaryFolder'>): Promise<InputCheckReport> {
  return checkInputs({ temporaryFolder: folder, ...options });
}

function issue(report: InputCheckReport, code: InputIssue['code']): InputIssue | undefined {
  return [...report.errors, ...report.warnings].find((candidate) => candidate.code === code);
}

describe('checkInputs', () => {
  test('plain names pass', async () => {
    const report = await check({ manifestPath: manifest(['0/a.png', '0/b.png', '1/c.png']), programArguments: ['--input_root', '${{inputs.input_data}}'] });

    expect(report.errors).toEqual([]);
    expect(report.warnings).toEqual([]);
    expect(report.itemCount).toBe(3);
    expect(report.totalBytes).toBe(300);
  });

  test('empty folder submits nothing', async () => {
    const report = await check({ manifestPath: manifest([]), inputFolder: '/data/empty' });

    expect(report.errors).toHaveLength(1);
    expect(report.errors[0].code).toBe('empty_input');
    expect(report.errors[0].message).toBe('input folder /data/empty has no files, so nothing is submitted; check inputFolder');
  });

  test('file and folder with one name collide', async () => {
    for (const partitions of [1, 5]) {
      const report = await check({ manifestPath: manifest(['a/b/c.png', 'z.png', 'a', 'q/r.png', 'a/b', 'ab.png']), partitions });

      const collision = issue(report, 'file_folder_collision');
      expect(collision?.severity).toBe('error');
      expect(collision?.count).toBe(2);
      expect([...(collision?.examples ?? [])].sort()).toEqual(['a is a file and also the folder of a/b/c.png', 'a/b is a file and also the folder of a/b/c.png']);
      expect(collision?.message).toMatch(/^2 names are both a file and a folder, .*rename the file or the folder$/);
    }
  });

  test('NFC and NFD forms of one name warn', async () => {
    const composed = 'caf\u00e9.png';
    const decomposed = 'cafe\u0301.png';
    const report = await check({ manifestPath: manifest([composed, 'x.png', decomposed]), partitions: 3 });

    expect(report.errors).toEqual([]);
    const collision = issue(report, 'unicode_normalization_collision');
    expect(collision?.severity).toBe('warning');
    expect(collision?.message).toMatch(/^1 group of file names differs only in Unicode normalization .*rename one name of each group$/);
    expect(collision?.count).toBe(1);
    expect(collision?.examples).toEqual([`"${composed}" (U+00E9) and "${decomposed}" (U+0301)`]);
    expect(issue(report, 'decomposed_unicode_name')?.examples).toEqual([decomposed]);
  });

  test('NFD name alone is only a warning', async () => {
    const report = await check({ manifestPath: manifest(['cafe\u0301.png']) });

    expect(report.errors).toEqual([]);
    expect(issue(report, 'decomposed_unicode_name')?.severity).toBe('warning');
  });

  test('name normalizing to ASCII collides', async () => {
    // U+212A KELVIN SIGN normalizes to the ASCII letter K under NFC.
    const report = await check({ manifestPath: manifest(['K.png', '\u212a.png']), partitions: 4 });

    expect(issue(report, 'unicode_normalization_collision')?.count).toBe(1);
  });

  test('duplicate paths are errors', async () => {
    const report = await check({ manifestPath: manifest(['a.png', 'b.png', 'a.png']) });

    expect(issue(report, 'duplicate_path')).toMatchObject({ severity: 'error', count: 1, examples: ['a.png'] });
  });

  test.each([
    ['scan 01.png', 'whitespace_in_name'],
    ['a#1.png', 'url_delimiter_in_name'],
    ['what?.png', 'url_delimiter_in_name'],
    ['a&b.png', 'url_delimiter_in_name'],
    ['a+b.png', 'url_delimiter_in_name'],
    ['100%.png', 'percent_in_name'],
    ['a%20b.png', 'percent_in_name'],
    ['dir\\a.png', 'backslash_in_name'],
    ['line\nbreak.png', 'control_character_in_name'],
    ['Pokémon.png', 'non_ascii_name'],
    ['写真.png', 'non_ascii_name'],
  ] as const)('name %j warns %s', async (name, code) => {
    const report = await check({ manifestPath: manifest(['ok.png', name]) });

    expect(report.errors).toEqual([]);
    expect(issue(report, code)).toMatchObject({ severity: 'warning', count: 1, examples: [name] });
  });

  test('file too large for the timeout warns with numbers', async () => {
    const report = await check({
      manifestPath: manifest([{ path: 'small.bin', size: 100 }, { path: 'huge.bin', size: 25_000 }, { path: 'big.bin', size: 12_000 }]),
      runInvocationTimeout: 10,
      measuredBytesPerSecond: 1000,
      miniBatchSize: 2,
    });

    // Both mini-batches exceed the budget only through a file that alone exceeds it, so only the files are reported.
    expect(issue(report, 'mini_batch_exceeds_timeout')).toBeUndefined();
    const oversized = issue(report, 'file_exceeds_timeout');
    expect(oversized).toMatchObject({ severity: 'warning', count: 2, examples: ['huge.bin', 'big.bin'] });
    expect(oversized?.message).toContain('runInvocationTimeout 10 s');
    expect(oversized?.message).toContain('the largest, huge.bin, has 24.4 KiB (25000 bytes) and needs about 25 s');
    expect(oversized?.message).toContain('raise runInvocationTimeout above 25 s or split the files');
  });

  test('mini-batch too large for the timeout warns', async () => {
    const sizes = [4000, 4000, 4000, 100, 100, 100, 4000];
    const report = await check({
      manifestPath: manifest(sizes.map((size, index) => ({ path: `f${index}.bin`, size }))),
      runInvocationTimeout: 10,
      measuredBytesPerSecond: 1000,
      miniBatchSize: 3,
    });

    expect(issue(report, 'file_exceeds_timeout')).toBeUndefined();
    const oversized = issue(report, 'mini_batch_exceeds_timeout');
    expect(oversized).toMatchObject({ count: 1, examples: ['mini-batch 0'] });
    expect(oversized?.message).toContain('mini-batch 0, has 11.7 KiB (12000 bytes) and needs about 12 s');
  });

  test('sizes are not checked without a rate', async () => {
    const report = await check({ manifestPath: manifest([{ path: 'huge.bin', size: 10 ** 12 }]), runInvocationTimeout: 1 });

    expect(report.warnings).toEqual([]);
  });

  test('invalid manifest line is named', async () => {
    const file = path.join(folder, 'manifest.jsonl');
    writeFileSync(file, '{"path": "a.png", "size": 1}\n{"path": "b.png"}\n');

    await expect(check({ manifestPath: file })).rejects.toThrow(/line 2 has size undefined; expected a non-negative integer number of bytes/);
  });

  test('temporary files are removed', async () => {
    const temporaryFolder = path.join(folder, 'scratch');
    mkdirSync(temporaryFolder);

    await checkInputs({ manifestPath: manifest(['a/b.png', 'a']), temporaryFolder });

    expect(readdirSync(temporaryFolder)).toEqual([]);
  });

  test('program arguments are checked too', async () => {
    const report = await check({ manifestPath: manifest(['a.png']), programArguments: ['--mini_batch_size', '5'] });

    expect(issue(report, 'reserved_runtime_argument')?.severity).toBe('error');
  });
});

describe('checkProgramArguments', () => {
  test('sample arguments pass', () => {
    expect(checkProgramArguments(['--input_root', '${{inputs.input_data}}', '--model_dir', 'model', '--partition_keys', 'a,b'])).toEqual([]);
  });

  test('runtime settings name the input field', () => {
    const [reserved] = checkProgramArguments(['--error_threshold', '5', '--run_max_try=3']);

    expect(reserved.code).toBe('reserved_runtime_argument');
    expect(reserved.severity).toBe('error');
    expect(reserved.examples).toEqual(['--error_threshold', '--run_max_try']);
    expect(reserved.message).toContain('set errorThreshold in the workflow input instead of --error_threshold');
    expect(reserved.message).toContain('set maxRetries in the workflow input instead of --run_max_try');
  });

  test('flags the runtime sets are errors', () => {
    const [reserved] = checkProgramArguments(['--output /tmp/x', '--INPUT0', 'data', '--input_fds_2=ds']);

    expect(reserved.examples).toEqual(['--output', '--INPUT0', '--input_fds_2']);
    expect(reserved.message).toContain('rename --output, which the runtime sets itself');
  });

  test('tuning flags are warnings', () => {
    const issues = checkProgramArguments(['--task_overhead_timeout', '600', '--copy_logs_to_parent', 'True']);

    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ code: 'runtime_tuning_argument', severity: 'warning', examples: ['--task_overhead_timeout', '--copy_logs_to_parent'] });
    expect(issues[0].message).toContain('the local runner ignores them');
  });

  test('runtime flag prefixes warn about abbreviation', () => {
    const issues = checkProgramArguments(['--output_dir', 'out', '--mini_batch_size_hint', '3']);

    expect(issues).toHaveLength(1);
    expect(issues[0].code).toBe('argument_abbreviates_runtime_flag');
    expect(issues[0].examples).toEqual(['--output_dir (the runtime passes --output)', '--mini_batch_size_hint (the runtime passes --mini_batch_size)']);
    expect(issues[0].message).toContain('allow_abbrev=False');
  });
});
