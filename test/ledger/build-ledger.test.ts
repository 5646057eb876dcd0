import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildLedger, type BuildLedgerOptions, type LedgerCounts } from '../../activities/ledger/build-ledger';
import type { LedgerRecord } from '../../activities/ledger/ledger-format';

let folder: string;

beforeEach(() => {
  folder = mkdtempSync(path.join(os.tmpdir(), 'ledger-test-'));
});

afterEach(() => {
  rmSync(folder, { recursive: true, force: true });
});

function writeLines(name: string, lines: readonly string[]): string {
  const file = path.join(folder, name);
  writeFileSync(file, lines.map((line) => `${line}\n`).join(''));
  return file;
}

function manifest(paths: readonly string[]): string {
  return writeLines('manifest.jsonl', paths.map((itemPath) => JSON.stringify({ path: itemPath, size: 10 })));
}

function rows(values: readonly unknown[]): string {
  return writeLines('results.jsonl', values.map((value) => (typeof value === 'string' ? value : JSON.stringify(value))));
}

function readLedgerRecords(file: string): LedgerRecord[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as LedgerRecord);
}

async function build(options: Omit<BuildLedgerOptions, 'ledgerPath'> & { ledgerPath?: string }): Promise<{ records: LedgerRecord[]; counts: LedgerCounts; sha256: string }> {
  const ledgerPath = options.ledgerPath ?? path.join(folder, `ledger-${Math.random().toString(36).slice(2)}.jsonl`);
  const result = await buildLedger({ temporaryFolder: folder, ...options, ledgerPath });
  return { records: readLedgerRecords(ledgerPath), counts: result.counts, sha256: result.sha256 };
}

describe('buildLedger', () => {
  test('records follow an unsorted manifest order', async () => {
    const manifestPath = manifest(['c.png', 'a.png', 'b/z.png', 'b/a.png']);
    const resultsPath = rows([
      { path: 'b/a.png', label: 1, confidence: 0.9 },
      { path: 'c.png', label: 2, confidence: 0.8 },
      { path: 'a.png', label: 3, confidence: 0.7 },
      { path: 'b/z.png', label: 4, confidence: 0.6 },
    ]);

    for (const partitions of [1, 3, 7]) {
      const { records, counts } = await build({ manifestPath, resultsPath, partitions });
      expect(records.map((record) => record.path)).toEqual(['c.png', 'a.png', 'b/z.png', 'b/a.png']);
      expect(records.map((record) => record.row?.label)).toEqual([2, 3, 4, 1]);
      expect(records.every((record) => record.state === 'scored')).toBe(true);
      expect(counts.scored).toBe(4);
    }
  });

  test('row text is embedded unchanged', async () => {
    const manifestPath = manifest(['a.png', 'b.png']);
    const resultsPath = rows(['{"path": "a.png",  "label": 1.50, "extra": {"k": [1, 2]}}', '{"path":"b.png",\r"label":2}']);
    const ledgerPath = path.join(folder, 'ledger.jsonl');

    await build({ manifestPath, resultsPath, ledgerPath });

    const lines = readFileSync(ledgerPath, 'utf8').split('\n');
    expect(lines[0]).toBe('{"path":"a.png","state":"scored","row":{"path": "a.png",  "label": 1.50, "extra": {"k": [1, 2]}}}');
    // A `\r` inside a row is white space to JSON but a line break to readline, so that row is re-serialized.
    expect(lines[1]).toBe('{"path":"b.png","state":"scored","row":{"path":"b.png","label":2}}');
  });

  test('duplicate rows collapse to one', async () => {
    const manifestPath = manifest(['a.png', 'b.png']);
    const resultsPath = rows([
      { path: 'a.png', label: 1 },
      { path: 'a.png', label: 9 },
      { path: 'b.png', label: null, error: 'OSError: truncated' },
      { path: 'b.png', label: 5 },
      { path: 'b.png', label: 6 },
    ]);

    const { records, counts } = await build({ manifestPath, resultsPath });

    expect(counts.duplicateRows).toBe(3);
    expect(records[0].row?.label).toBe(1);
    // The first row without an error wins over an earlier row with one, as after a successful retry.
    expect(records[1]).toMatchObject({ state: 'scored', row: { label: 5 } });
    expect(counts.scored).toBe(2);
    expect(counts.failed).toBe(0);
  });

  test('row errors fail their item', async () => {
    const manifestPath = manifest(['a.png', 'b.png', 'c.png']);
    const resultsPath = rows([
      { path: 'a.png', label: null, error: 'OSError: cannot identify image file' },
      { path: 'b.png', label: null, error: { code: 7 } },
      { path: 'c.png', label: 1, error: null },
    ]);

    const { records, counts } = await build({ manifestPath, resultsPath });

    expect(records[0]).toMatchObject({
      state: 'failed',
      reason: { kind: 'row_error', errorType: 'OSError', message: 'OSError: cannot identify image file' },
      row: { path: 'a.png' },
    });
    expect(records[1]).toMatchObject({ state: 'failed', reason: { kind: 'row_error', message: '{"code":7}' } });
    expect(records[1].reason?.errorType).toBeUndefined();
    expect(records[2].state).toBe('scored');
    expect(counts.failedByKind.row_error).toBe(2);
    expect(counts.failedByReason).toEqual({ 'row_error OSError': 1, row_error: 1 });
  });

  test('failure records give the reason', async () => {
    const manifestPath = manifest(['a.png', 'b.png', 'c.png', 'd.png', 'e.png']);
    const resultsPath = rows([{ path: 'd.png', label: 1 }]);
    const failureRecordsPath = writeLines('failures.jsonl', [
      JSON.stringify({ path: 'a.png', kind: 'exception', errorType: 'ValueError', message: 'bad input', miniBatch: 0, attempts: 3 }),
      JSON.stringify({ path: 'b.png', kind: 'timeout', errorType: 'TimeoutError', message: 'run() did not return' }),
      JSON.stringify({ path: 'c.png', kind: 'missing_from_return', errorType: 'RowCountMismatch' }),
      // Azure ML appends the rows of a mini-batch that returned too few elements, so the row wins.
      JSON.stringify({ path: 'd.png', kind: 'missing_from_return' }),
      JSON.stringify({ path: 'gone.png', kind: 'exception' }),
    ]);

    const { records, counts } = await build({ manifestPath, resultsPath, failureRecordsPath });

    expect(records.map((record) => [record.state, record.reason?.kind])).toEqual([
      ['failed', 'exception'],
      ['failed', 'timeout'],
      ['failed', 'missing_from_return'],
      ['scored', undefined],
      ['failed', 'no_result'],
    ]);
    expect(records[0].reason).toEqual({ kind: 'exception', errorType: 'ValueError', message: 'bad input', miniBatch: 0, attempts: 3 });
    expect(counts.failedByReason).toEqual({
      'exception ValueError': 1,
      'timeout TimeoutError': 1,
      'missing_from_return RowCountMismatch': 1,
      no_result: 1,
    });
    expect(counts.failedByKind).toMatchObject({ exception: 1, timeout: 1, missing_from_return: 1, no_result: 1, row_error: 0 });
    expect(counts.failureRecords).toBe(5);
    expect(counts.unknownFailureRecords).toBe(1);
  });

  test('without results file items count as scored', async () => {
    const manifestPath = manifest(['a.png', 'b.png']);
    const failureRecordsPath = writeLines('failures.jsonl', [JSON.stringify({ path: 'b.png', kind: 'worker_exited' })]);

    const { records, counts } = await build({ manifestPath, failureRecordsPath });

    expect(records).toEqual([
      { path: 'a.png', state: 'scored' },
      { path: 'b.png', state: 'failed', reason: { kind: 'worker_exited' } },
    ]);
    expect(counts.rows).toBe(0);
  });

  test('unknown rows are reported, not merged', async () => {
    const manifestPath = manifest(['a.png']);
    const unknown = Array.from({ length: 8 }, (_, index) => ({ path: `other/${index}.png`, label: index }));
    const resultsPath = rows([...unknown.slice(0, 4), { path: 'a.png', label: 1 }, ...unknown.slice(4)]);

    const { records, counts } = await build({ manifestPath, resultsPath, partitions: 5, maxExamples: 3 });

    expect(records).toHaveLength(1);
    expect(counts.unknownRows).toBe(8);
    expect(counts.unknownRowExamples).toEqual([
      { line: 1, path: 'other/0.png' },
      { line: 2, path: 'other/1.png' },
      { line: 3, path: 'other/2.png' },
    ]);
  });

  test('unkeyed rows are counted with examples', async () => {
    const manifestPath = manifest(['a.png']);
    const resultsPath = rows(['a.png: 3', '[1, 2]', '{"path": 7}', '{"file": "a.png"}', 'null', '{"path": "a.png", "label": 1}', '', '{broken']);

    const { counts } = await build({ manifestPath, resultsPath, maxExamples: 2 });

    expect(counts.rows).toBe(7);
    expect(counts.unkeyedRows).toBe(6);
    expect(counts.unkeyedRowExamples).toEqual([
      { line: 1, text: 'a.png: 3' },
      { line: 2, text: '[1, 2]' },
    ]);
    expect(counts.scored).toBe(1);
  });

  test('keys are compared without Unicode normalization', async () => {
    const composed = 'caf\u00e9.png';
    const decomposed = 'cafe\u0301.png';
    const manifestPath = manifest([composed]);
    const resultsPath = rows([{ path: decomposed, label: 1 }]);

    const { records, counts } = await build({ manifestPath, resultsPath });

    expect(records[0]).toEqual({ path: composed, state: 'failed', reason: { kind: 'no_result' } });
    expect(counts.unknownRowExamples).toEqual([{ line: 1, path: decomposed }]);
  });

  test('include and exclude patterns exclude items', async () => {
    const manifestPath = manifest(['images/a.png', 'images/b.tmp', 'notes/readme.txt', 'images/c.png']);
    const resultsPath = rows([
      { path: 'images/a.png', label: 1 },
      { path: 'images/b.tmp', label: 2 },
      { path: 'notes/readme.txt', label: 3 },
    ]);

    const { records, counts } = await build({ manifestPath, resultsPath, include: ['images/**'], exclude: ['**/*.tmp'] });

    expect(records).toEqual([
      { path: 'images/a.png', state: 'scored', row: { path: 'images/a.png', label: 1 } },
      { path: 'images/b.tmp', state: 'excluded', reason: { kind: 'exclude_pattern', pattern: '**/*.tmp' } },
      { path: 'notes/readme.txt', state: 'excluded', reason: { kind: 'no_include_pattern' } },
      { path: 'images/c.png', state: 'failed', reason: { kind: 'no_result' } },
    ]);
    expect(counts).toMatchObject({ items: 4, scored: 1, failed: 1, excluded: 2, excludedItemsWithRows: 2, unknownRows: 0 });
  });

  test('names with markup and quotes survive', async () => {
    const names = ['<b>&"x"</b>.png', "it's\ta\\b.png", 'line\nbreak.png', '日本語/画像 #1?.png'];
    const manifestPath = manifest(names);
    const resultsPath = rows(names.map((name, index) => ({ path: name, label: index })));

    const { records } = await build({ manifestPath, resultsPath, partitions: 2 });

    expect(records.map((record) => record.path)).toEqual(names);
    expect(records.map((record) => record.row?.label)).toEqual([0, 1, 2, 3]);
  });

  test('sha256 is the ledger file hash', async () => {
    const manifestPath = manifest(['a.png']);
    const resultsPath = rows([{ path: 'a.png', label: 1 }]);
    const ledgerPath = path.join(folder, 'ledger.jsonl');

    const { sha256 } = await build({ manifestPath, resultsPath, ledgerPath });

    expect(sha256).toBe(createHash('sha256').update(readFileSync(ledgerPath)).digest('hex'));
  });

  test('existing ledger is never overwritten', async () => {
    const manifestPath = manifest(['a.png']);
    const ledgerPath = writeLines('ledger.jsonl', ['keep me']);

    await expect(buildLedger({ manifestPath, ledgerPath, temporaryFolder: folder })).rejects.toThrow(/ledger\.jsonl already exists; delete it or choose another path/);
    expect(readFileSync(ledgerPath, 'utf8')).toBe('keep me\n');
  });

  test('temporary files are removed after success and failure', async () => {
    const manifestPath = manifest(['a.png']);
    const temporaryFolder = path.join(folder, 'scratch');
    mkdirSync(temporaryFolder);

    await buildLedger({ manifestPath, resultsPath: rows(['{broken']), ledgerPath: path.join(folder, 'l.jsonl'), temporaryFolder });
    await expect(
      buildLedger({ manifestPath: writeLines('bad.jsonl', ['{"size": 1}']), ledgerPath: path.join(folder, 'm.jsonl'), temporaryFolder }),
    ).rejects.toThrow();

    expect(readdirSync(temporaryFolder)).toEqual([]);
    expect(existsSync(path.join(folder, 'm.jsonl'))).toBe(false);
  });

  test('empty manifest gives empty ledger', async () => {
    const manifestPath = manifest([]);
    const resultsPath = rows([{ path: 'a.png', label: 1 }]);
    const ledgerPath = path.join(folder, 'ledger.jsonl');

    const { records, counts } = await build({ manifestPath, resultsPath, ledgerPath });

    expect(records).toEqual([]);
    expect(readFileSync(ledgerPath, 'utf8')).toBe('');
    expect(counts).toMatchObject({ items: 0, scored: 0, failed: 0, unknownRows: 1 });
  });

  test('abort stops the build and cleans up', async () => {
    const manifestPath = manifest(['a.png', 'b.png']);
    const resultsPath = rows([{ path: 'a.png', label: 1 }]);
    const ledgerPath = path.join(folder, 'ledger.jsonl');
    const temporaryFolder = path.join(folder, 'scratch');
    mkdirSync(temporaryFolder);
    const controller = new AbortController();
    const phases: string[] = [];

    const building = buildLedger({
      manifestPath,
      resultsPath,
      ledgerPath,
      temporaryFolder,
      signal: controller.signal,
      onProgress: (progress) => {
        phases.push(progress.phase);
        if (progress.phase === 'results') controller.abort(new Error('activity cancelled'));
      },
    });

    await expect(building).rejects.toThrow('activity cancelled');
    expect(phases).toEqual(['manifest', 'results']);
    expect(existsSync(ledgerPath)).toBe(false);
    expect(readdirSync(temporaryFolder)).toEqual([]);
  });

  test('abort while writing leaves no files', async () => {
    const manifestPath = manifest(['a.png', 'b.png']);
    const ledgerPath = path.join(folder, 'out', 'ledger.jsonl');
    mkdirSync(path.dirname(ledgerPath));
    const controller = new AbortController();

    const building = buildLedger({
      manifestPath,
      ledgerPath,
      temporaryFolder: folder,
      signal: controller.signal,
      onProgress: (progress) => {
        if (progress.phase === 'join') controller.abort(new Error('activity cancelled'));
      },
    });

    await expect(building).rejects.toThrow('activity cancelled');
    expect(readdirSync(path.dirname(ledgerPath))).toEqual([]);
  });

  test('invalid manifest line is named', async () => {
    const manifestPath = writeLines('manifest.jsonl', [JSON.stringify({ path: 'a.png', size: 1 }), '', '{"path": "../escape.png", "size": 1}']);

    await expect(build({ manifestPath })).rejects.toThrow(/manifest .*manifest\.jsonl line 3 has path "\.\.\/escape\.png", which leaves the input folder/);
  });

  test('duplicate manifest path is rejected', async () => {
    const manifestPath = manifest(['a.png', 'b.png', 'a.png']);

    await expect(build({ manifestPath })).rejects.toThrow(/lists "a\.png" more than once; a manifest must list each file once/);
  });

  test('invalid failure record is named', async () => {
    const manifestPath = manifest(['a.png']);
    const failureRecordsPath = writeLines('failures.jsonl', [JSON.stringify({ path: 'a.png', kind: 'crashed' })]);

    await expect(build({ manifestPath, failureRecordsPath })).rejects.toThrow(/failures\.jsonl line 1 has kind "crashed"; each line must be/);
  });

  test('missing results file is named', async () => {
    const manifestPath = manifest(['a.png']);

    await expect(build({ manifestPath, resultsPath: path.join(folder, 'nope.jsonl') })).rejects.toThrow(/results file .*nope\.jsonl not found/);
  });

  test('matches a reference on random data', async () => {
    const random = seededRandom(7);
    const itemCount = 5000;
    const paths = Array.from({ length: itemCount }, (_, index) => `d${Math.floor(random() * 50)}/f${index}${random() < 0.05 ? '.tmp' : '.png'}`);
    const rowValues: { path: string; label?: number; error?: string | null }[] = [];
    const failureValues: { path: string; kind: string; errorType?: string }[] = [];
    for (const itemPath of paths) {
      const roll = random();
      if (roll < 0.05) failureValues.push({ path: itemPath, kind: 'exception', errorType: random() < 0.5 ? 'ValueError' : 'KeyError' });
      else if (roll < 0.08) rowValues.push({ path: itemPath, error: 'OSError: broken' });
      else if (roll < 0.1) continue;
      else rowValues.push({ path: itemPath, label: Math.floor(random() * 10) });
      if (random() < 0.03) rowValues.push({ path: itemPath, label: 99 });
    }
    for (let index = 0; index < 40; index += 1) rowValues.push({ path: `unknown/${index}`, label: 1 });
    shuffleInPlace(rowValues, random);
    shuffleInPlace(paths, random);
    const manifestPath = manifest(paths);
    const resultsPath = rows(rowValues);
    const failureRecordsPath = writeLines('failures.jsonl', failureValues.map((value) => JSON.stringify(value)));

    const { records, counts } = await build({ manifestPath, resultsPath, failureRecordsPath, exclude: ['**/*.tmp'], partitions: 13 });

    const expected = referenceLedger(paths, rowValues, failureValues, (itemPath) => itemPath.endsWith('.tmp'));
    expect(records).toEqual(expected);
    expect(counts.items).toBe(itemCount);
    expect(counts.scored + counts.failed + counts.excluded).toBe(itemCount);
    expect(counts.unknownRows).toBe(40);
  });
});

/** Builds the expected ledger by the rules of buildLedger, the simple way, with everything in memory. */
function referenceLedger(
  paths: string[],
  rowValues: { path: string; error?: string | null }[],
  failureValues: { path: string; kind: string; errorType?: string }[],
  isExcluded: (itemPath: string) => boolean,
): LedgerRecord[] {
  const rowsByPath = new Map<string, Record<string, unknown>[]>();
  for (const row of rowValues) rowsByPath.set(row.path, [...(rowsByPath.get(row.path) ?? []), row]);
  const failureByPath = new Map<string, { kind: string; errorType?: string }>();
  for (const { path: itemPath, ...reason } of failureValues) if (!failureByPath.has(itemPath)) failureByPath.set(itemPath, reason);

  return paths.map((itemPath): LedgerRecord => {
    if (isExcluded(itemPath)) return { path: itemPath, state: 'excluded', reason: { kind: 'exclude_pattern', pattern: '**/*.tmp' } };
    const itemRows = rowsByPath.get(itemPath) ?? [];
    const good = itemRows.find((row) => row.error === undefined || row.error === null);
    if (good !== undefined) return { path: itemPath, state: 'scored', row: good };
    if (itemRows.length > 0) {
      const error = itemRows[0].error as string;
      return { path: itemPath, state: 'failed', reason: { kind: 'row_error', errorType: error.split(':')[0], message: error }, row: itemRows[0] };
    }
    const failure = failureByPath.get(itemPath);
    if (failure !== undefined) return { path: itemPath, state: 'failed', reason: failure as LedgerRecord['reason'] };
    return { path: itemPath, state: 'failed', reason: { kind: 'no_result' } };
  });
}

function seededRandom(seed: number): () => number {
  let state = seed;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 4294967296;
  };
}

function shuffleInPlace<T>(values: T[], random: () => number): void {
  for (let index = values.length - 1; index > 0; index -= 1) {
    const other = Math.floor(random() * (index + 1));
    [values[index], values[other]] = [values[other], values[index]];
  }
}
