import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildLedger } from '../../activities/ledger/build-ledger';
import { CsvParser, readCsvFile } from '../../client/csv';
import { exportLedgerRows, exportRows } from '../../client/export-rows';

let folder: string;

beforeEach(() => {
  folder = mkdtempSync(path.join(os.tmpdir(), 'csv-round-trip-test-'));
});

afterEach(() => {
  rmSync(folder, { recursive: true, force: true });
});

async function readAll(file: string): Promise<string[][]> {
  const records: string[][] = [];
  for await (const record of readCsvFile(file)) records.push(record);
  return records;
}

/** Labels that break naive CSV: separators, quotes, line breaks of every kind, and text around them. */
const HARD_LABELS = [
  'plain',
  'comma, inside',
  'say "cheese"',
  '"fully quoted"',
  'two\nlines',
  'windows\r\nline',
  'bare\rreturn',
  '',
  ' padded ',
  ',"\n,"',
  'ünïcödé, 日本語 "引用"',
  '=SUM(A1:A2)',
];

describe('CSV export round trip', () => {
  test('hard labels survive export and import', async () => {
    const resultsPath = path.join(folder, 'results.jsonl');
    const rows = HARD_LABELS.map((label, index) => ({ path: `images/${index}, "x".png`, label, confidence: index / 10 }));
    writeFileSync(resultsPath, rows.map((row) => `${JSON.stringify(row)}\n`).join(''));
    const csvPath = path.join(folder, 'rows.csv');

    const count = await exportRows(resultsPath, 'csv', csvPath, false);

    expect(count).toBe(rows.length);
    const [header, ...records] = await readAll(csvPath);
    expect(header).toEqual(['path', 'label', 'confidence']);
    expect(records).toHaveLength(rows.length);
    records.forEach((record, index) => {
      expect(record).toEqual([rows[index].path, rows[index].label, String(rows[index].confidence)]);
    });
  });

  test('missing fields, nested values and non-object rows survive', async () => {
    const resultsPath = path.join(folder, 'results.jsonl');
    const lines = [
      JSON.stringify({ path: 'a.png', label: 'x,y' }),
      JSON.stringify({ path: 'b.png', error: 'OSError: "bad"\nfile', label: null }),
      JSON.stringify({ path: 'c.png', label: { top: ['a', 'b,c'] } }),
      'a.png: "7", raw text',
    ];
    writeFileSync(resultsPath, `${lines.join('\n')}\n`);
    const csvPath = path.join(folder, 'rows.csv');

    await exportRows(resultsPath, 'csv', csvPath, false);

    expect(await readAll(csvPath)).toEqual([
      ['path', 'label', 'error', 'row'],
      ['a.png', 'x,y', '', ''],
      ['b.png', '', 'OSError: "bad"\nfile', ''],
      ['c.png', '{"top":["a","b,c"]}', '', ''],
      ['', '', '', 'a.png: "7", raw text'],
    ]);
  });

  test('single empty column keeps its row', async () => {
    const resultsPath = path.join(folder, 'results.jsonl');
    writeFileSync(resultsPath, `${JSON.stringify({ label: '' })}\n${JSON.stringify({ label: 'x' })}\n`);
    const csvPath = path.join(folder, 'rows.csv');

    await exportRows(resultsPath, 'csv', csvPath, false);

    // RFC 4180 reads an empty line as a record with one empty field.
    expect(await readAll(csvPath)).toEqual([['label'], [''], ['x']]);
  });
});

function writeJsonLines(name: string, values: readonly unknown[]): string {
  const file = path.join(folder, name);
  writeFileSync(file, values.map((value) => `${JSON.stringify(value)}\n`).join(''));
  return file;
}

/** Builds the item ledger of `paths` (in manifest order) from results rows appended in rounds, as a batch does. */
async function ledgerOf(paths: readonly string[], rounds: readonly (readonly unknown[])[]): Promise<{ ledgerPath: string; resultsPath: string }> {
  const manifestPath = writeJsonLines('manifest.jsonl', paths.map((itemPath) => ({ path: itemPath, size: 10 })));
  const resultsPath = writeJsonLines('results.jsonl', rounds.flat());
  const resultsRoundStarts: number[] = [];
  let line = 1;
  for (const round of rounds.slice(0, -1)) {
    line += round.length;
    resultsRoundStarts.push(line);
  }
  const ledgerPath = path.join(folder, 'ledger.jsonl');
  await buildLedger({ manifestPath, resultsPath, resultsRoundStarts, ledgerPath, temporaryFolder: folder });
  return { ledgerPath, resultsPath };
}

describe('export from the item ledger', () => {
  // c.png reports an error in round 1 and is scored in round 2, so the results file contains two rows for it.
  const ITEMS = ['c.png', 'a.png', 'b.png', 'd.png'];
  const ROUND_1 = [
    { path: 'a.png', label: 'cat, "tabby"', error: null },
    { path: 'c.png', label: null, error: 'OSError: cannot read\nc.png' },
    { path: 'b.png', label: null, error: 'OSError: truncated' },
  ];
  const ROUND_2 = [
    { path: 'c.png', label: 'dog', error: null },
    { path: 'b.png', label: null, error: 'OSError: still truncated' },
  ];

  test('replaced row exported once per item', async () => {
    const { ledgerPath } = await ledgerOf(ITEMS, [ROUND_1, ROUND_2]);
    const csvPath = path.join(folder, 'rows.csv');

    const counts = await exportLedgerRows(ledgerPath, 'csv', csvPath, false);

    // One row per item that has one, in manifest order. d.png has no row, so it is counted instead.
    expect(counts).toEqual({ rows: 3, itemsWithoutRow: 1 });
    expect(await readAll(csvPath)).toEqual([
      ['path', 'label', 'error'],
      ['c.png', 'dog', ''],
      ['a.png', 'cat, "tabby"', ''],
      ['b.png', '', 'OSError: still truncated'],
    ]);
  });

  test('JSON Lines export contains ledger rows', async () => {
    const { ledgerPath, resultsPath } = await ledgerOf(ITEMS, [ROUND_1, ROUND_2]);
    const jsonlPath = path.join(folder, 'rows.jsonl');

    const counts = await exportLedgerRows(ledgerPath, 'jsonl', jsonlPath, false);

    expect(counts).toEqual({ rows: 3, itemsWithoutRow: 1 });
    const lines = readFileSync(jsonlPath, 'utf8').split('\n');
    expect(lines.pop()).toBe('');
    expect(lines.map((line) => JSON.parse(line) as unknown)).toEqual([ROUND_2[0], ROUND_1[0], ROUND_2[1]]);
    // The raw export still has every row of both rounds.
    expect(await exportRows(resultsPath, 'jsonl', path.join(folder, 'raw.jsonl'), false)).toBe(5);
  });

  test('hard labels survive ledger export and import', async () => {
    const rows = HARD_LABELS.map((label, index) => ({ path: `images/${index}, "x".png`, label, confidence: index / 10 }));
    const { ledgerPath } = await ledgerOf(
      rows.map((row) => row.path),
      [rows],
    );
    const csvPath = path.join(folder, 'rows.csv');

    await exportLedgerRows(ledgerPath, 'csv', csvPath, false);

    const [header, ...records] = await readAll(csvPath);
    expect(header).toEqual(['path', 'label', 'confidence']);
    expect(records).toEqual(rows.map((row) => [row.path, row.label, String(row.confidence)]));
  });

  test('existing output kept without overwrite', async () => {
    const { ledgerPath } = await ledgerOf(ITEMS, [ROUND_1, ROUND_2]);
    const csvPath = path.join(folder, 'rows.csv');
    writeFileSync(csvPath, 'keep me\n');

    await expect(exportLedgerRows(ledgerPath, 'csv', csvPath, false)).rejects.toThrow(`${csvPath} already exists; choose another --output or add --force`);
    expect(readFileSync(csvPath, 'utf8')).toBe('keep me\n');

    await exportLedgerRows(ledgerPath, 'csv', csvPath, true);
    expect(readFileSync(csvPath, 'utf8').split('\n')[0]).toBe('path,label,error');
  });
});

describe('CsvParser', () => {
  test('chunks may split quotes and line ends', () => {
    const text = 'a,"b ""q"" c"\r\n"x\r\ny",z\r\n';
    for (let size = 1; size <= text.length; size += 1) {
      const parser = new CsvParser();
      const records: string[][] = [];
      for (let start = 0; start < text.length; start += size) records.push(...parser.push(text.slice(start, start + size)));
      records.push(...parser.end());
      expect(records).toEqual([
        ['a', 'b "q" c'],
        ['x\r\ny', 'z'],
      ]);
    }
  });

  test('last record needs no line break', () => {
    const parser = new CsvParser();
    expect([...parser.push('a,b\nc,d'), ...parser.end()]).toEqual([
      ['a', 'b'],
      ['c', 'd'],
    ]);
  });

  test.each([
    ['a,b"c\n', /line 1: a quote inside an unquoted field/],
    ['"ab"c\n', /line 1: "c" follows a closing quote/],
    ['x\n"never closed\n', /ends inside a quoted field that starts before line 3; add the closing quote/],
  ])('invalid CSV %j is rejected', (text, message) => {
    const parser = new CsvParser('test.csv');
    expect(() => {
      parser.push(text);
      parser.end();
    }).toThrow(message);
  });
});
