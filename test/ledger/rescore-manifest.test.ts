import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildLedger } from '../../activities/ledger/build-ledger';
import { writeRescoreManifest } from '../../activities/ledger/rescore-manifest';

let folder: string;

beforeEach(() => {
  folder = mkdtempSync(path.join(os.tmpdir(), 'rescore-manifest-test-'));
});

afterEach(() => {
  rmSync(folder, { recursive: true, force: true });
});

function writeLines(name: string, lines: readonly string[]): string {
  const file = path.join(folder, name);
  writeFileSync(file, lines.map((line) => `${line}\n`).join(''));
  return file;
}

function sha256Of(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/**
 * Writes a manifest of six unsorted items, with a blank line and lines spelled with extra spaces, and builds its
 * ledger. In the ledger b.png, d.png and f.png fail (row error, failure record, no result), a.png and e.png are
 * scored, and c.tmp is excluded.
 */
async function sampleBatch(): Promise<{ manifestPath: string; ledgerPath: string; manifestLines: string[] }> {
  const manifestLines = [
    '{"path": "e.png", "size": 50}',
    '{"path":"b.png","size":20}',
    '{ "size": 30, "path": "c.tmp" }',
    '{"path": "a.png", "size": 10}',
    '{"path": "d.png",   "size": 40}',
    '{"path": "f.png", "size": 0}',
  ];
  const manifestPath = writeLines('manifest.jsonl', [...manifestLines.slice(0, 3), '', ...manifestLines.slice(3)]);
  const resultsPath = writeLines('results.jsonl', [
    JSON.stringify({ path: 'a.png', label: 1 }),
    JSON.stringify({ path: 'b.png', label: null, error: 'OSError: truncated' }),
    JSON.stringify({ path: 'c.tmp', label: 2 }),
    JSON.stringify({ path: 'e.png', label: 3 }),
  ]);
  const failures = writeLines('failures.jsonl', [JSON.stringify({ path: 'd.png', kind: 'timeout' })]);
  const ledgerPath = path.join(folder, 'ledger.jsonl');
  await buildLedger({
    manifestPath,
    resultsPath,
    failureRecords: [{ path: failures, round: 1 }],
    exclude: ['*.tmp'],
    ledgerPath,
    temporaryFolder: folder,
    partitions: 3,
  });
  return { manifestPath, ledgerPath, manifestLines };
}

describe('writeRescoreManifest', () => {
  test('lists exactly the failed items with their sizes', async () => {
    const { manifestPath, ledgerPath, manifestLines } = await sampleBatch();
    const destination = path.join(folder, 'rescore.jsonl');

    const written = await writeRescoreManifest({ ledgerPath, manifestPath, destination });

    // Manifest order, each line exactly as the input manifest spells it.
    expect(readFileSync(destination, 'utf8')).toBe(`${manifestLines[1]}\n${manifestLines[4]}\n${manifestLines[5]}\n`);
    expect(written.itemCount).toBe(3);
    expect(written.totalBytes).toBe(60);
    expect(written.sha256).toBe(sha256Of(destination));
    expect(readdirSync(folder).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

  test('no failed items gives an empty manifest', async () => {
    const manifestPath = writeLines('manifest.jsonl', [JSON.stringify({ path: 'a.png', size: 3 })]);
    const ledgerPath = writeLines('ledger.jsonl', [JSON.stringify({ path: 'a.png', state: 'scored' })]);
    const destination = path.join(folder, 'rescore.jsonl');

    const written = await writeRescoreManifest({ ledgerPath, manifestPath, destination });

    expect(readFileSync(destination, 'utf8')).toBe('');
    expect(written).toEqual({ itemCount: 0, totalBytes: 0, sha256: createHash('sha256').digest('hex') });
  });

  test('second call reuses the same manifest', async () => {
    const { manifestPath, ledgerPath } = await sampleBatch();
    const destination = path.join(folder, 'rescore.jsonl');

    const first = await writeRescoreManifest({ ledgerPath, manifestPath, destination });
    const content = readFileSync(destination, 'utf8');
    const second = await writeRescoreManifest({ ledgerPath, manifestPath, destination });

    expect(second).toEqual(first);
    expect(readFileSync(destination, 'utf8')).toBe(content);
    expect(readdirSync(folder).filter((name) => name.startsWith('.rescore'))).toEqual([]);
  });

  test('destination with other content is kept', async () => {
    const { manifestPath, ledgerPath } = await sampleBatch();
    const destination = writeLines('rescore.jsonl', ['{"path": "someone-else.png", "size": 1}']);

    await expect(writeRescoreManifest({ ledgerPath, manifestPath, destination })).rejects.toThrow(
      /rescore manifest .*rescore\.jsonl already exists with other content; delete it or choose another path/,
    );
    expect(readFileSync(destination, 'utf8')).toBe('{"path": "someone-else.png", "size": 1}\n');
    expect(readdirSync(folder).filter((name) => name.startsWith('.rescore'))).toEqual([]);
  });

  test('ledger of another manifest is rejected', async () => {
    const { ledgerPath } = await sampleBatch();
    const otherManifest = writeLines('other-manifest.jsonl', [
      JSON.stringify({ path: 'e.png', size: 50 }),
      JSON.stringify({ path: 'x.png', size: 20 }),
    ]);
    const destination = path.join(folder, 'rescore.jsonl');

    const writing = writeRescoreManifest({ ledgerPath, manifestPath: otherManifest, destination });

    await expect(writing).rejects.toThrow(
      /ledger .*ledger\.jsonl line 2 is for "b\.png", but manifest .*other-manifest\.jsonl line 2 lists "x\.png"; the ledger was not built from this manifest/,
    );
    expect(existsSync(destination)).toBe(false);
    expect(readdirSync(folder).filter((name) => name.startsWith('.rescore'))).toEqual([]);
  });

  test('ledger shorter than manifest is rejected', async () => {
    const manifestPath = writeLines('manifest.jsonl', [JSON.stringify({ path: 'a.png', size: 1 }), JSON.stringify({ path: 'b.png', size: 2 })]);
    const ledgerPath = writeLines('ledger.jsonl', [JSON.stringify({ path: 'a.png', state: 'failed', reason: { kind: 'no_result' } })]);
    const destination = path.join(folder, 'rescore.jsonl');

    await expect(writeRescoreManifest({ ledgerPath, manifestPath, destination })).rejects.toThrow(
      /ledger .*ledger\.jsonl ends at line 1 with no record for "b\.png", which manifest .*manifest\.jsonl lists on line 2/,
    );
    expect(existsSync(destination)).toBe(false);
  });

  test('ledger longer than manifest is rejected', async () => {
    const manifestPath = writeLines('manifest.jsonl', [JSON.stringify({ path: 'a.png', size: 1 })]);
    const ledgerPath = writeLines('ledger.jsonl', [
      JSON.stringify({ path: 'a.png', state: 'failed', reason: { kind: 'no_result' } }),
      JSON.stringify({ path: 'b.png', state: 'failed', reason: { kind: 'no_result' } }),
    ]);
    const destination = path.join(folder, 'rescore.jsonl');

    await expect(writeRescoreManifest({ ledgerPath, manifestPath, destination })).rejects.toThrow(
      /ledger .*ledger\.jsonl line 2 lists "b\.png" after the last item of manifest .*manifest\.jsonl/,
    );
    expect(existsSync(destination)).toBe(false);
  });

  test('invalid ledger line is named', async () => {
    const manifestPath = writeLines('manifest.jsonl', [JSON.stringify({ path: 'a.png', size: 1 })]);
    const ledgerPath = writeLines('ledger.jsonl', ['{"path": "a.png", "state": "lost"}']);

    await expect(writeRescoreManifest({ ledgerPath, manifestPath, destination: path.join(folder, 'rescore.jsonl') })).rejects.toThrow(
      /ledger .*ledger\.jsonl line 1 is not a ledger record/,
    );
  });

  test('abort leaves no files', async () => {
    const { manifestPath, ledgerPath } = await sampleBatch();
    const destination = path.join(folder, 'rescore.jsonl');
    const controller = new AbortController();
    controller.abort(new Error('activity cancelled'));

    await expect(writeRescoreManifest({ ledgerPath, manifestPath, destination, signal: controller.signal })).rejects.toThrow('activity cancelled');
    expect(existsSync(destination)).toBe(false);
    expect(readdirSync(folder).filter((name) => name.startsWith('.rescore'))).toEqual([]);
  });
});
