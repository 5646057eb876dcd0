import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CsvParser, readCsvFile } from '../../client/csv';
import { exportRows } from '../../client/export-rows';

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
