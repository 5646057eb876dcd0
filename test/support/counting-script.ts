/**
 * A fixture for tests of follow-up rounds, rescores and duplicate rows on both backends. It is an input folder of
 * small text files and an entry script that logs every item each run() call is given, so tests count the calls.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readLedger, type LedgerRecord } from '../../activities/ledger/ledger-format';

/**
 * An entry script that appends `{"path", "pid"}` to `--calls_log` for every item it is given, sleeps `--delay`
 * seconds per item, and returns one JSON row per item. The first bytes of a file decide its fate:
 *   - `flaky`: a row with an `error` while the file `--fail_while` exists, else a clean row;
 *   - `corrupt`: always a row with an `error`;
 *   - `raise`: run() raises, which fails the item's whole mini-batch.
 * With `--slow_again S`, an item given to run() before waits S more seconds, so a follow-up job runs slowly.
 */
export const COUNTING_SCRIPT = `
import json, os, sys, time

def _arg(name, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default

def init():
    global CALLS, ROOT, DELAY, FAIL_WHILE, SLOW_AGAIN
    CALLS = _arg("--calls_log")
    ROOT = _arg("--input_root")
    DELAY = float(_arg("--delay", "0"))
    FAIL_WHILE = _arg("--fail_while", "")
    SLOW_AGAIN = float(_arg("--slow_again", "0"))

def run(mini_batch):
    rows = []
    for file_path in mini_batch:
        relative = os.path.relpath(file_path, ROOT).replace(os.sep, "/")
        seen_before = os.path.exists(CALLS) and json.dumps(relative) in open(CALLS).read()
        with open(CALLS, "a") as log:
            log.write(json.dumps({"path": relative, "pid": os.getpid()}) + "\\n")
        time.sleep(DELAY + (SLOW_AGAIN if seen_before else 0))
        with open(file_path, "rb") as handle:
            data = handle.read()
        if data.startswith(b"raise"):
            raise ValueError("run() cannot score " + relative)
        if data.startswith(b"corrupt") or (data.startswith(b"flaky") and FAIL_WHILE and os.path.exists(FAIL_WHILE)):
            rows.append(json.dumps({"path": relative, "label": None, "error": "ValueError: cannot read " + relative}))
        else:
            rows.append(json.dumps({"path": relative, "label": len(data) % 10, "error": None}))
    return rows
`;

export interface Fixture {
  inputFolder: string;
  codeDirectory: string;
  callsLog: string;
  failWhile: string;
}

/** Writes `files` (relative path to content) into a new input folder, plus the counting entry script. */
export function fixture(files: Record<string, string>): Fixture {
  const root = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-rounds-'));
  const inputFolder = path.join(root, 'input');
  const codeDirectory = path.join(root, 'code');
  mkdirSync(codeDirectory, { recursive: true });
  for (const [relative, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(inputFolder, relative)), { recursive: true });
    writeFileSync(path.join(inputFolder, relative), content);
  }
  writeFileSync(path.join(codeDirectory, 'score.py'), COUNTING_SCRIPT);
  // The Azure backend registers an environment from the code folder's conda file; the script needs no packages.
  writeFileSync(path.join(codeDirectory, 'conda.yaml'), 'name: counting\ndependencies:\n  - python=3.11\n');
  return { inputFolder, codeDirectory, callsLog: path.join(root, 'calls.jsonl'), failWhile: path.join(root, 'fail-while') };
}

export function readCalls(callsLog: string): { path: string; pid: number }[] {
  if (!existsSync(callsLog)) return [];
  return readFileSync(callsLog, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as { path: string; pid: number });
}

export function countBy<T>(values: T[]): Map<T, number> {
  const counts = new Map<T, number>();
  for (const value of values) counts.set(value, (counts.get(value) ?? 0) + 1);
  return counts;
}

/** Rows of the results file, as parsed JSON, in file order. */
export function readRows(resultsFile: string): { path: string; error: string | null }[] {
  return readFileSync(resultsFile, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as { path: string; error: string | null });
}

export async function ledgerRecords(ledgerFile: string): Promise<LedgerRecord[]> {
  const records: LedgerRecord[] = [];
  for await (const record of readLedger(ledgerFile)) records.push(record);
  return records;
}

export function numberedFiles(count: number, content: (index: number) => string = (index) => `item ${index}`): Record<string, string> {
  return Object.fromEntries(Array.from({ length: count }, (_, index) => [`items/${String(index).padStart(3, '0')}.txt`, content(index)]));
}


/** Content of a file in the odd-names fixture: `empty.txt` is empty, `corrupt.txt` fails, any other contains its own name. */
export function oddFileContent(name: string): string {
  if (name === 'empty.txt') return '';
  if (name === 'corrupt.txt') return 'corrupt bytes';
  return name;
}
