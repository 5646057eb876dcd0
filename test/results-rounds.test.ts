import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { RESULTS_LOCK_FILE, RESULTS_ROUNDS_FILE, mergeRound, readResultsRounds } from '../activities/backends/common/results-rounds';
import { StageError } from '../activities/errors';

// The results file of a batch grows by one round per job; these tests merge rounds into a temporary folder.

let folder: string;
let resultsFile: string;

beforeEach(() => {
  folder = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-rounds-'));
  resultsFile = path.join(folder, 'parallel_run_step.txt');
});

afterEach(() => {
  rmSync(folder, { recursive: true, force: true });
});

function rows(...paths: string[]): Readable {
  return Readable.from(paths.map((item) => `${JSON.stringify({ path: item, error: item.startsWith('bad') ? 'ValueError: bad' : null })}\n`));
}

describe('results rounds', () => {
  test('rounds append in order', async () => {
    await mergeRound(folder, resultsFile, { jobName: 'job-1', rows: rows('a', 'bad-b', 'c') });
    const merged = await mergeRound(folder, resultsFile, { jobName: 'job-2', rows: rows('b') });

    expect(merged.rounds.map((round) => [round.round, round.jobName, round.firstLine, round.rows, round.failedRows])).toEqual([
      [1, 'job-1', 1, 3, 1],
      [2, 'job-2', 4, 1, 0],
    ]);
    expect(merged).toMatchObject({ rowCount: 4, failedRowCount: 1 });
    expect(readFileSync(resultsFile, 'utf8').trim().split('\n')).toHaveLength(4);
  });

  test('merging a job again changes nothing', async () => {
    await mergeRound(folder, resultsFile, { jobName: 'job-1', rows: rows('a') });
    await mergeRound(folder, resultsFile, { jobName: 'job-2', rows: rows('b') });
    const before = readFileSync(resultsFile, 'utf8');

    const again = await mergeRound(folder, resultsFile, { jobName: 'job-2', rows: rows('b', 'b') });

    expect(again.rounds).toHaveLength(2);
    expect(readFileSync(resultsFile, 'utf8')).toBe(before);
  });

  test('cut-short append is dropped before the retry', async () => {
    await mergeRound(folder, resultsFile, { jobName: 'job-1', rows: rows('a') });
    // A collect that crashed while appending job-2's rows left half a line behind.
    appendFileSync(resultsFile, '{"path": "b", "err');

    await mergeRound(folder, resultsFile, { jobName: 'job-2', rows: rows('b') });

    expect(readFileSync(resultsFile, 'utf8')).toBe(`${JSON.stringify({ path: 'a', error: null })}\n${JSON.stringify({ path: 'b', error: null })}\n`);
  });

  test('failed job without output adds an empty round', async () => {
    await mergeRound(folder, resultsFile, { jobName: 'job-1', rows: rows('a') });
    const merged = await mergeRound(folder, resultsFile, { jobName: 'job-2', noResultReason: { message: 'job job-2 failed' } });

    expect(merged.rounds[1]).toMatchObject({ round: 2, rows: 0, firstLine: 2, noResultReason: { message: 'job job-2 failed' } });
  });

  test('another job holding the lock gets a retryable error', async () => {
    writeFileSync(path.join(folder, RESULTS_LOCK_FILE), JSON.stringify({ jobName: 'job-other', since: '2026-12-04T00:00:00Z' }));

    const error = await mergeRound(folder, resultsFile, { jobName: 'job-1', rows: rows('a') }).catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(StageError);
    expect((error as StageError).kind).toBe('Transient');
    expect((error as StageError).message).toContain('being merged by job job-other');
    expect(await readResultsRounds(folder)).toEqual([]);
  });

  test('own stale lock is taken over and released', async () => {
    writeFileSync(path.join(folder, RESULTS_LOCK_FILE), JSON.stringify({ jobName: 'job-1', since: '2026-12-04T00:00:00Z' }));

    await mergeRound(folder, resultsFile, { jobName: 'job-1', rows: rows('a') });

    expect(await readResultsRounds(folder)).toHaveLength(1);
    expect(() => readFileSync(path.join(folder, RESULTS_LOCK_FILE))).toThrow();
  });

  test('shortened results file is refused', async () => {
    await mergeRound(folder, resultsFile, { jobName: 'job-1', rows: rows('a', 'b') });
    writeFileSync(resultsFile, '');

    await expect(mergeRound(folder, resultsFile, { jobName: 'job-2', rows: rows('c') })).rejects.toThrow('rows were removed by hand');
  });

  test('invalid rounds file is refused with its path', async () => {
    writeFileSync(path.join(folder, RESULTS_ROUNDS_FILE), '{"rounds": 3}');

    await expect(mergeRound(folder, resultsFile, { jobName: 'job-1', rows: rows('a') })).rejects.toThrow(
      `${path.join(folder, RESULTS_ROUNDS_FILE)} is not a valid list of result rounds`,
    );
  });
});
