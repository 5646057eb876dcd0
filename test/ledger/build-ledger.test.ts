import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildLedger, type BuildLedgerOptions, type LedgerCounts } from '../../activities/ledger/build-ledger';
import { buildBatchLedger } from '../../activities/ledger/batch-ledger';
import type { LedgerRecord } from '../../activities/ledger/ledger-format';
import type { CollectedResults, ResultsRound } from '../../activities/types';

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

    const { records, counts } = await build({ manifestPath, resultsPath, failureRecords: [{ path: failureRecordsPath, round: 1 }] });

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

    const { records, counts } = await build({ manifestPath, failureRecords: [{ path: failureRecordsPath, round: 1 }] });

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

    await expect(build({ manifestPath, failureRecords: [{ path: failureRecordsPath, round: 1 }] })).rejects.toThrow(/failures\.jsonl line 1 has kind "crashed"; each line must be/);
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

    const { records, counts } = await build({
      manifestPath,
      resultsPath,
      failureRecords: [{ path: failureRecordsPath, round: 1 }],
      exclude: ['**/*.tmp'],
      partitions: 13,
    });

    const expected = referenceLedger(paths, rowValues, failureValues, (itemPath) => itemPath.endsWith('.tmp'));
    expect(records).toEqual(expected);
    expect(counts.items).toBe(itemCount);
    expect(counts.scored + counts.failed + counts.excluded).toBe(itemCount);
    expect(counts.unknownRows).toBe(40);
  });
});

describe('buildLedger rounds', () => {
  test('clean row of round 2 scores a round 1 row_error', async () => {
    const manifestPath = manifest(['a.png', 'b.png']);
    const resultsPath = rows([
      { path: 'a.png', label: null, error: 'OSError: truncated' },
      { path: 'b.png', label: 2 },
      { path: 'a.png', label: 7 },
    ]);

    const { records, counts } = await build({ manifestPath, resultsPath, resultsRoundStarts: [3] });

    expect(records[0]).toEqual({ path: 'a.png', state: 'scored', row: { path: 'a.png', label: 7 } });
    expect(counts.scored).toBe(2);
    expect(counts.failed).toBe(0);
    expect(counts.duplicateRows).toBe(0);
    expect(counts.rescoredRows).toBe(1);
  });

  test('identical rows in one round are duplicates', async () => {
    const manifestPath = manifest(['a.png']);
    const resultsPath = rows([
      { path: 'a.png', label: 1 },
      { path: 'a.png', label: 1 },
    ]);

    const { records, counts } = await build({ manifestPath, resultsPath });

    expect(records).toEqual([{ path: 'a.png', state: 'scored', row: { path: 'a.png', label: 1 } }]);
    expect(counts.duplicateRows).toBe(1);
    expect(counts.rescoredRows).toBe(0);
  });

  test('duplicates are counted per round', async () => {
    const manifestPath = manifest(['a.png']);
    const resultsPath = rows([
      { path: 'a.png', error: 'OSError: r1' },
      { path: 'a.png', error: 'OSError: r1 again' },
      { path: 'a.png', error: 'ValueError: r2' },
      { path: 'a.png', error: 'ValueError: r2 again' },
      { path: 'a.png', error: 'KeyError: r3' },
    ]);

    const { records, counts } = await build({ manifestPath, resultsPath, resultsRoundStarts: [3, 5] });

    // The first row of the latest round gives the reason.
    expect(records[0]).toMatchObject({ state: 'failed', reason: { kind: 'row_error', errorType: 'KeyError', message: 'KeyError: r3' } });
    expect(records[0].row).toEqual({ path: 'a.png', error: 'KeyError: r3' });
    expect(counts.duplicateRows).toBe(2);
    expect(counts.rescoredRows).toBe(2);
    expect(counts.rows).toBe(5);
  });

  test('row_error of round 2 beats failure record of round 1', async () => {
    const manifestPath = manifest(['a.png']);
    const resultsPath = rows([{ path: 'a.png', label: null, error: 'OSError: still broken' }]);
    const round1 = writeLines('failures-1.jsonl', [JSON.stringify({ path: 'a.png', kind: 'exception', errorType: 'ValueError' })]);

    const { records, counts } = await build({ manifestPath, resultsPath, resultsRoundStarts: [1], failureRecords: [{ path: round1, round: 1 }] });

    expect(records[0]).toMatchObject({
      state: 'failed',
      reason: { kind: 'row_error', errorType: 'OSError', message: 'OSError: still broken' },
      row: { path: 'a.png', error: 'OSError: still broken' },
    });
    expect(counts.failedByReason).toEqual({ 'row_error OSError': 1 });
    expect(counts.rescoredRows).toBe(0);
  });

  test('failure record of round 2 beats row_error of round 1', async () => {
    const manifestPath = manifest(['a.png']);
    const resultsPath = rows([{ path: 'a.png', label: null, error: 'OSError: truncated' }]);
    const round2 = writeLines('failures-2.jsonl', [JSON.stringify({ path: 'a.png', kind: 'worker_exited', errorType: 'WorkerExited' })]);

    const { records } = await build({ manifestPath, resultsPath, resultsRoundStarts: [2], failureRecords: [{ path: round2, round: 2 }] });

    expect(records[0]).toEqual({ path: 'a.png', state: 'failed', reason: { kind: 'worker_exited', errorType: 'WorkerExited' } });
  });

  test('row_error beats failure record of same round', async () => {
    const manifestPath = manifest(['a.png']);
    const resultsPath = rows([
      { path: 'other.png', label: 1 },
      { path: 'a.png', label: null, error: 'OSError: truncated' },
    ]);
    const round2 = writeLines('failures-2.jsonl', [JSON.stringify({ path: 'a.png', kind: 'missing_from_return' })]);

    const { records } = await build({ manifestPath, resultsPath, resultsRoundStarts: [2], failureRecords: [{ path: round2, round: 2 }] });

    expect(records[0]).toMatchObject({ state: 'failed', reason: { kind: 'row_error', errorType: 'OSError' } });
  });

  test('failure record of the later round gives the reason', async () => {
    const manifestPath = manifest(['a.png', 'b.png']);
    const resultsPath = rows([]);
    const round1 = writeLines('failures-1.jsonl', [
      JSON.stringify({ path: 'a.png', kind: 'exception', errorType: 'ValueError', message: 'round 1' }),
      JSON.stringify({ path: 'b.png', kind: 'exception', errorType: 'ValueError', message: 'round 1' }),
    ]);
    const round2 = writeLines('failures-2.jsonl', [
      JSON.stringify({ path: 'a.png', kind: 'timeout', errorType: 'TimeoutError', message: 'round 2' }),
      JSON.stringify({ path: 'a.png', kind: 'exception', errorType: 'KeyError', message: 'round 2, second record' }),
    ]);

    // The files are passed latest round first: the round numbers decide, not the order.
    const { records, counts } = await build({
      manifestPath,
      resultsPath,
      failureRecords: [
        { path: round2, round: 2 },
        { path: round1, round: 1 },
      ],
    });

    expect(records[0]).toEqual({ path: 'a.png', state: 'failed', reason: { kind: 'timeout', errorType: 'TimeoutError', message: 'round 2' } });
    expect(records[1]).toEqual({ path: 'b.png', state: 'failed', reason: { kind: 'exception', errorType: 'ValueError', message: 'round 1' } });
    expect(counts.failedByReason).toEqual({ 'timeout TimeoutError': 1, 'exception ValueError': 1 });
    expect(counts.failureRecords).toBe(4);
  });

  test('scored row of round 1 beats later failure record', async () => {
    const manifestPath = manifest(['a.png']);
    const resultsPath = rows([{ path: 'a.png', label: 4 }]);
    const round2 = writeLines('failures-2.jsonl', [JSON.stringify({ path: 'a.png', kind: 'exception' })]);

    const { records } = await build({ manifestPath, resultsPath, resultsRoundStarts: [2], failureRecords: [{ path: round2, round: 2 }] });

    expect(records[0]).toEqual({ path: 'a.png', state: 'scored', row: { path: 'a.png', label: 4 } });
  });

  test('empty round between rounds is allowed', async () => {
    const manifestPath = manifest(['a.png', 'b.png']);
    const resultsPath = rows([
      { path: 'a.png', error: 'OSError: r1' },
      { path: 'b.png', error: 'OSError: r1' },
      { path: 'a.png', label: 1 },
    ]);
    // Round 2 appended no rows, so rounds 2 and 3 both start at line 3.
    const round2 = writeLines('failures-2.jsonl', [JSON.stringify({ path: 'b.png', kind: 'timeout' })]);

    const { records, counts } = await build({ manifestPath, resultsPath, resultsRoundStarts: [3, 3], failureRecords: [{ path: round2, round: 2 }] });

    expect(records[0]).toMatchObject({ state: 'scored', row: { label: 1 } });
    expect(records[1]).toEqual({ path: 'b.png', state: 'failed', reason: { kind: 'timeout' } });
    expect(counts.rescoredRows).toBe(1);
  });

  test('excluded item rows count once per item', async () => {
    const manifestPath = manifest(['a.tmp']);
    const resultsPath = rows([
      { path: 'a.tmp', label: 1 },
      { path: 'a.tmp', label: 1 },
      { path: 'a.tmp', label: 2 },
    ]);

    const { records, counts } = await build({ manifestPath, resultsPath, resultsRoundStarts: [3], exclude: ['*.tmp'] });

    expect(records[0].state).toBe('excluded');
    expect(counts).toMatchObject({ excludedItemsWithRows: 1, duplicateRows: 1, rescoredRows: 1 });
  });

  test('invalid round options are rejected', async () => {
    const manifestPath = manifest(['a.png']);
    const resultsPath = rows([{ path: 'a.png', label: 1 }, { path: 'a.png', label: 2 }]);

    await expect(build({ manifestPath, resultsPath, resultsRoundStarts: [2, 1] })).rejects.toThrow(
      /resultsRoundStarts\[1\] is 1; each entry must be an integer line number of at least 1 and no smaller than the entry before it/,
    );
    await expect(build({ manifestPath, resultsPath, resultsRoundStarts: [0] })).rejects.toThrow(/resultsRoundStarts\[0\] is 0/);
    await expect(build({ manifestPath, resultsRoundStarts: [2] })).rejects.toThrow(/resultsRoundStarts is set without resultsPath/);
    await expect(build({ manifestPath, resultsPath, resultsRoundStarts: [4] })).rejects.toThrow(
      /resultsRoundStarts ends with line 4, but results file .*results\.jsonl has 2 lines/,
    );
    await expect(build({ manifestPath, resultsPath, failureRecords: [{ path: resultsPath, round: 0 }] })).rejects.toThrow(
      /failureRecords\[0\]\.round is 0 for .*results\.jsonl; pass the 1-based round/,
    );
    await expect(build({ manifestPath, resultsPath, failureRecords: [{ path: path.join(folder, 'nope.jsonl'), round: 1 }] })).rejects.toThrow(
      /failure records file .*nope\.jsonl not found/,
    );
    // A round that appended nothing may start right after the last line.
    await expect(build({ manifestPath, resultsPath, resultsRoundStarts: [3] })).resolves.toMatchObject({ counts: { duplicateRows: 1 } });
  });

  test('rounds match a reference on random data', async () => {
    const random = seededRandom(11);
    const paths = Array.from({ length: 3000 }, (_, index) => `d${Math.floor(random() * 20)}/f${index}${random() < 0.05 ? '.tmp' : '.png'}`);
    const rounds: RoundInput[] = [];
    let pending = [...paths];
    for (let round = 1; round <= 3; round += 1) {
      const roundRows: RoundInput['rows'] = [];
      const roundFailures: RoundInput['failures'] = [];
      const next: string[] = [];
      for (const itemPath of pending) {
        const roll = random();
        if (roll < 0.1) {
          roundFailures.push({ path: itemPath, kind: random() < 0.5 ? 'exception' : 'timeout', errorType: `E${round}`, message: `round ${round}` });
          // Azure ML appends the rows a short mini-batch did return, so a failure record can come with a row.
          if (random() < 0.3) roundRows.push({ path: itemPath, error: `OSError: round ${round}` });
          next.push(itemPath);
        } else if (roll < 0.2) {
          roundRows.push({ path: itemPath, error: `OSError: round ${round}` });
          next.push(itemPath);
        } else if (roll < 0.25) {
          next.push(itemPath);
        } else {
          roundRows.push({ path: itemPath, label: round * 10 + Math.floor(random() * 10) });
        }
        if (random() < 0.03) roundRows.push({ path: itemPath, label: 99 });
      }
      shuffleInPlace(roundRows, random);
      rounds.push({ rows: roundRows, failures: roundFailures });
      pending = next;
    }
    shuffleInPlace(paths, random);

    const manifestPath = manifest(paths);
    const resultsPath = rows(rounds.flatMap((round) => round.rows));
    const resultsRoundStarts = [1 + rounds[0].rows.length, 1 + rounds[0].rows.length + rounds[1].rows.length];
    const failureRecords = rounds.map((round, index) => ({
      path: writeLines(`failures-${index + 1}.jsonl`, round.failures.map((value) => JSON.stringify(value))),
      round: index + 1,
    }));
    shuffleInPlace(failureRecords, random);

    const { records, counts } = await build({ manifestPath, resultsPath, resultsRoundStarts, failureRecords, exclude: ['**/*.tmp'], partitions: 9 });

    const expected = referenceRoundsLedger(paths, rounds, (itemPath) => itemPath.endsWith('.tmp'));
    expect(records).toEqual(expected.records);
    expect(counts.duplicateRows).toBe(expected.duplicateRows);
    expect(counts.rescoredRows).toBe(expected.rescoredRows);
    expect(counts.scored + counts.failed + counts.excluded).toBe(paths.length);
    expect(counts.failed).toBeGreaterThan(0);
    expect(counts.rescoredRows).toBeGreaterThan(0);
  });
});

describe('buildLedger no-result reason', () => {
  test('noResultReason is attached to items without result', async () => {
    const manifestPath = manifest(['a.png', 'b.png', 'c.png']);
    const resultsPath = rows([{ path: 'a.png', label: 1 }]);
    const failureRecordsPath = writeLines('failures.jsonl', [JSON.stringify({ path: 'b.png', kind: 'exception' })]);
    const message = 'job amlbatch-x-1 failed: error threshold exceeded (12 failed items, threshold 10)';

    const { records, counts } = await build({
      manifestPath,
      resultsPath,
      failureRecords: [{ path: failureRecordsPath, round: 1 }],
      noResultReason: { errorType: 'JobFailed', message },
    });

    expect(records[0].state).toBe('scored');
    expect(records[1]).toEqual({ path: 'b.png', state: 'failed', reason: { kind: 'exception' } });
    expect(records[2]).toEqual({ path: 'c.png', state: 'failed', reason: { kind: 'no_result', errorType: 'JobFailed', message } });
    expect(counts.failedByReason).toEqual({ exception: 1, 'no_result JobFailed': 1 });
    expect(counts.failedByKind.no_result).toBe(1);
  });

  test('noResultReason without errorType keeps the plain label', async () => {
    const manifestPath = manifest(['a.png']);
    const resultsPath = rows([]);
    const message = 'x'.repeat(1500);

    const { records, counts } = await build({ manifestPath, resultsPath, noResultReason: { message } });

    expect(records[0].reason).toEqual({ kind: 'no_result', message: `${'x'.repeat(1000)}...` });
    expect(counts.failedByReason).toEqual({ no_result: 1 });
  });

  test('noResultReason is unused without results file', async () => {
    const manifestPath = manifest(['a.png']);

    const { records } = await build({ manifestPath, noResultReason: { message: 'job failed' } });

    expect(records).toEqual([{ path: 'a.png', state: 'scored' }]);
  });
});

describe('buildLedger failure examples', () => {
  test('failureExamples follow manifest order and are capped', async () => {
    const paths = Array.from({ length: 40 }, (_, index) => `z${(40 - index).toString().padStart(2, '0')}.png`);
    const manifestPath = manifest(paths);
    // Every third item fails with a row error, the others are scored; the first item has no result at all.
    const resultsPath = rows(
      paths.slice(1).map((itemPath, index) => ((index + 1) % 3 === 0 ? { path: itemPath, error: `ValueError: item ${index + 1}` } : { path: itemPath, label: 1 })),
    );
    const failed = [paths[0], ...paths.filter((_, index) => index > 0 && index % 3 === 0)];

    for (const partitions of [1, 4, 16]) {
      const { counts } = await build({ manifestPath, resultsPath, partitions, maxFailureExamples: 5 });

      expect(counts.failed).toBe(failed.length);
      expect(counts.failureExamples.map((example) => example.path)).toEqual(failed.slice(0, 5));
      expect(counts.failureExamples[0]).toEqual({ path: paths[0], reason: 'no_result' });
      expect(counts.failureExamples[1]).toEqual({ path: paths[3], reason: 'row_error ValueError', message: 'ValueError: item 3' });
    }
  });

  test('failureExamples default to ten', async () => {
    const paths = Array.from({ length: 25 }, (_, index) => `f${index}.png`);
    const manifestPath = manifest(paths);

    const { counts } = await build({ manifestPath, resultsPath: rows([]), partitions: 3 });

    expect(counts.failureExamples.map((example) => example.path)).toEqual(paths.slice(0, 10));
  });

  test('failureExamples messages are cut to 300 characters', async () => {
    const manifestPath = manifest(['a.png', 'b.png']);
    const failureRecordsPath = writeLines('failures.jsonl', [
      JSON.stringify({ path: 'a.png', kind: 'exception', errorType: 'ValueError', message: 'm'.repeat(800) }),
      JSON.stringify({ path: 'b.png', kind: 'timeout', message: 'short' }),
    ]);

    const { records, counts } = await build({ manifestPath, failureRecords: [{ path: failureRecordsPath, round: 1 }] });

    expect(counts.failureExamples[0].message).toBe(`${'m'.repeat(297)}...`);
    expect(counts.failureExamples[0].reason).toBe('exception ValueError');
    expect(counts.failureExamples[1]).toEqual({ path: 'b.png', reason: 'timeout', message: 'short' });
    // The ledger keeps the longer message of the failure record.
    expect(records[0].reason?.message).toBe('m'.repeat(800));
  });

  test('maxFailureExamples zero lists none', async () => {
    const manifestPath = manifest(['a.png']);

    const { counts } = await build({ manifestPath, resultsPath: rows([]), maxFailureExamples: 0 });

    expect(counts.failed).toBe(1);
    expect(counts.failureExamples).toEqual([]);
  });
});

describe('buildBatchLedger', () => {
  function round(values: Partial<ResultsRound> & Pick<ResultsRound, 'round' | 'firstLine'>): ResultsRound {
    return { jobName: `job-${values.round}`, rows: 0, failedRows: 0, endBytes: 0, ...values };
  }

  function collected(resultsFolder: string, rounds: ResultsRound[], resultsFile?: string): CollectedResults {
    return {
      resultsFolder,
      ...(resultsFile ? { resultsFile, resultsSha256: createHash('sha256').update(readFileSync(resultsFile)).digest('hex') } : {}),
      rowCount: 0,
      failedRowCount: 0,
      manifestFile: path.join(resultsFolder, 'manifest.jsonl'),
      rounds,
    };
  }

  function setUpBatch(): { resultsFolder: string; resultsFile: string } {
    const resultsFolder = path.join(folder, 'results');
    mkdirSync(resultsFolder);
    writeFileSync(path.join(resultsFolder, 'manifest.jsonl'), ['a.png', 'b.png', 'c.png'].map((itemPath) => `${JSON.stringify({ path: itemPath, size: 5 })}\n`).join(''));
    const resultsFile = path.join(resultsFolder, 'rows.jsonl');
    writeFileSync(resultsFile, `${JSON.stringify({ path: 'a.png', label: 1 })}\n${JSON.stringify({ path: 'b.png', error: 'OSError: truncated' })}\n`);
    return { resultsFolder, resultsFile };
  }

  test('unchanged inputs reuse the ledger', async () => {
    const { resultsFolder, resultsFile } = setUpBatch();
    const failures = path.join(resultsFolder, 'failures-1.jsonl');
    writeFileSync(failures, `${JSON.stringify({ path: 'c.png', kind: 'timeout' })}\n`);
    const rounds = [round({ round: 1, firstLine: 1, failureRecordsFile: failures })];

    const first = await buildBatchLedger(collected(resultsFolder, rounds, resultsFile));
    const ledgerFile = path.join(resultsFolder, 'ledger.jsonl');
    const inode = statSync(ledgerFile).ino;
    const second = await buildBatchLedger(collected(resultsFolder, rounds, resultsFile));

    expect(first).toMatchObject({ scored: 1, failed: 2, excluded: 0, failedByReason: { 'row_error OSError': 1, timeout: 1 } });
    expect(first?.failureExamples).toEqual([
      { path: 'b.png', reason: 'row_error OSError', message: 'OSError: truncated' },
      { path: 'c.png', reason: 'timeout' },
    ]);
    expect(second).toEqual(first);
    expect(statSync(ledgerFile).ino).toBe(inode);
    expect(readdirSync(resultsFolder).sort()).toEqual(['failures-1.jsonl', 'ledger-counts.json', 'ledger.jsonl', 'manifest.jsonl', 'rows.jsonl']);
  });

  test('appended round rebuilds the ledger', async () => {
    const { resultsFolder, resultsFile } = setUpBatch();
    const before = await buildBatchLedger(collected(resultsFolder, [round({ round: 1, firstLine: 1 })], resultsFile));
    expect(before).toMatchObject({ scored: 1, failed: 2, failedByReason: { 'row_error OSError': 1, no_result: 1 } });

    appendFileSync(resultsFile, `${JSON.stringify({ path: 'b.png', label: 2 })}\n`);
    const failures = path.join(resultsFolder, 'failures-2.jsonl');
    writeFileSync(failures, `${JSON.stringify({ path: 'c.png', kind: 'exception', errorType: 'ValueError' })}\n`);
    const rounds = [round({ round: 1, firstLine: 1 }), round({ round: 2, firstLine: 3, failureRecordsFile: failures })];
    const after = await buildBatchLedger(collected(resultsFolder, rounds, resultsFile));

    expect(after).toMatchObject({ scored: 2, failed: 1, duplicateRows: 0, failedByReason: { 'exception ValueError': 1 } });
    const records = readLedgerRecords(path.join(resultsFolder, 'ledger.jsonl'));
    expect(records.map((record) => record.state)).toEqual(['scored', 'scored', 'failed']);
    const countsDocument = JSON.parse(readFileSync(path.join(resultsFolder, 'ledger-counts.json'), 'utf8')) as LedgerCounts & { inputs: { resultsRoundStarts: number[] } };
    expect(countsDocument.rescoredRows).toBe(1);
    expect(countsDocument.inputs.resultsRoundStarts).toEqual([3]);
    expect(readdirSync(resultsFolder).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

  test('noResultReason comes from the last round', async () => {
    const { resultsFolder, resultsFile } = setUpBatch();
    const message = 'job amlbatch-x-2 failed: error threshold exceeded';
    const rounds = [
      round({ round: 1, firstLine: 1, noResultReason: { message: 'job amlbatch-x-1 failed' } }),
      round({ round: 2, firstLine: 3, noResultReason: { errorType: 'JobFailed', message } }),
    ];

    const summary = await buildBatchLedger(collected(resultsFolder, rounds, resultsFile));

    expect(summary?.failureExamples.at(-1)).toEqual({ path: 'c.png', reason: 'no_result JobFailed', message });
  });

  test('explicit inputs replace the rounds', async () => {
    const { resultsFolder, resultsFile } = setUpBatch();
    const failures = path.join(resultsFolder, 'failures.jsonl');
    writeFileSync(failures, `${JSON.stringify({ path: 'c.png', kind: 'worker_exited' })}\n`);

    const summary = await buildBatchLedger(collected(resultsFolder, [round({ round: 1, firstLine: 1 })], resultsFile), undefined, {
      failureRecords: [{ path: failures, round: 1 }],
      noResultReason: { message: 'unused' },
    });

    expect(summary?.failedByReason).toEqual({ 'row_error OSError': 1, worker_exited: 1 });
  });

  test('counts file without inputs rebuilds', async () => {
    const { resultsFolder, resultsFile } = setUpBatch();
    writeFileSync(path.join(resultsFolder, 'ledger.jsonl'), 'half a ledger');
    writeFileSync(path.join(resultsFolder, 'ledger-counts.json'), JSON.stringify({ scored: 99, failed: 0, excluded: 0 }));

    const summary = await buildBatchLedger(collected(resultsFolder, [round({ round: 1, firstLine: 1 })], resultsFile));

    expect(summary).toMatchObject({ scored: 1, failed: 2 });
    expect(readLedgerRecords(path.join(resultsFolder, 'ledger.jsonl'))).toHaveLength(3);
  });

  test('missing ledger rebuilds despite counts file', async () => {
    const { resultsFolder, resultsFile } = setUpBatch();
    const batch = collected(resultsFolder, [round({ round: 1, firstLine: 1 })], resultsFile);
    await buildBatchLedger(batch);
    rmSync(path.join(resultsFolder, 'ledger.jsonl'));

    const summary = await buildBatchLedger(batch);

    expect(summary).toMatchObject({ scored: 1, failed: 2 });
    expect(readLedgerRecords(path.join(resultsFolder, 'ledger.jsonl'))).toHaveLength(3);
  });

  test('rounds with a gap are rejected', async () => {
    const { resultsFolder, resultsFile } = setUpBatch();

    await expect(
      buildBatchLedger(collected(resultsFolder, [round({ round: 1, firstLine: 1 }), round({ round: 3, firstLine: 3 })], resultsFile)),
    ).rejects.toThrow(/results rounds of .*results are numbered 1, 3; expected 1, 2, 3, \.\.\. without gaps/);
  });
});

interface RoundInput {
  rows: { path: string; label?: number; error?: string }[];
  failures: { path: string; kind: string; errorType?: string; message?: string }[];
}

/** Builds the expected ledger of several rounds by the rules of buildLedger, with everything in memory. */
function referenceRoundsLedger(
  paths: string[],
  rounds: RoundInput[],
  isExcluded: (itemPath: string) => boolean,
): { records: LedgerRecord[]; duplicateRows: number; rescoredRows: number } {
  const known = new Set(paths);
  const rowsByPath = new Map<string, { round: number; row: RoundInput['rows'][number] }[]>();
  const failuresByPath = new Map<string, { round: number; failure: RoundInput['failures'][number] }[]>();
  rounds.forEach((round, index) => {
    for (const row of round.rows) rowsByPath.set(row.path, [...(rowsByPath.get(row.path) ?? []), { round: index + 1, row }]);
    for (const failure of round.failures) failuresByPath.set(failure.path, [...(failuresByPath.get(failure.path) ?? []), { round: index + 1, failure }]);
  });

  let duplicateRows = 0;
  let rescoredRows = 0;
  for (const [itemPath, itemRows] of rowsByPath) {
    if (!known.has(itemPath)) continue;
    const roundsWithRows = new Set(itemRows.map((entry) => entry.round));
    duplicateRows += itemRows.length - roundsWithRows.size;
    rescoredRows += roundsWithRows.size - 1;
  }

  const records = paths.map((itemPath): LedgerRecord => {
    if (isExcluded(itemPath)) return { path: itemPath, state: 'excluded', reason: { kind: 'exclude_pattern', pattern: '**/*.tmp' } };
    const itemRows = rowsByPath.get(itemPath) ?? [];
    const itemFailures = failuresByPath.get(itemPath) ?? [];
    const good = itemRows.find((entry) => entry.row.error === undefined);
    if (good !== undefined) return { path: itemPath, state: 'scored', row: good.row };

    const latest = Math.max(0, ...itemRows.map((entry) => entry.round), ...itemFailures.map((entry) => entry.round));
    const errorRow = itemRows.find((entry) => entry.round === latest);
    if (errorRow !== undefined) {
      const error = errorRow.row.error as string;
      return { path: itemPath, state: 'failed', reason: { kind: 'row_error', errorType: error.split(':')[0], message: error }, row: errorRow.row };
    }
    const failure = itemFailures.find((entry) => entry.round === latest);
    if (failure !== undefined) {
      const reason: Partial<RoundInput['failures'][number]> = { ...failure.failure };
      delete reason.path;
      return { path: itemPath, state: 'failed', reason: reason as LedgerRecord['reason'] };
    }
    return { path: itemPath, state: 'failed', reason: { kind: 'no_result' } };
  });
  return { records, duplicateRows, rescoredRows };
}

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
