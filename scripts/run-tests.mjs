#!/usr/bin/env node
// Runs the whole suite after setup: lint (which keeps workflow code deterministic), the TypeScript tests with
// Jest against real servers and real Python processes, and the scoring package's tests with pytest. Ends with
// one line "N passed, N failed" over both runners and exits non-zero when anything failed.
// Arguments are passed to Jest, e.g. `npm test -- test/input-validation.test.ts`.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const reportDir = path.join(root, 'test-results');
rmSync(reportDir, { recursive: true, force: true });
mkdirSync(reportDir, { recursive: true });
const jestArgs = process.argv.slice(2);
const bin = (name) => path.join(root, 'node_modules', '.bin', name);
const run = (command, args) => spawnSync(command, args, { cwd: root, stdio: 'inherit' }).status ?? 1;

let passed = 0;
let failed = 0;

if (jestArgs.length === 0) {
  console.log('== eslint');
  if (run(bin('eslint'), ['.']) === 0) passed += 1;
  else failed += 1;
}

console.log('== jest');
const jestReport = path.join(reportDir, 'jest.json');
const jestStatus = run(bin('jest'), ['--json', `--outputFile=${jestReport}`, ...jestArgs]);
try {
  const report = JSON.parse(readFileSync(jestReport, 'utf8'));
  passed += report.numPassedTests;
  failed += report.numFailedTests + report.numRuntimeErrorTestSuites;
} catch {
  console.error('jest wrote no report; counting the Jest run as one failure');
  failed += 1;
}
if (jestStatus !== 0 && failed === 0) failed += 1;

if (jestArgs.length === 0) {
  console.log('== pytest scoring/tests');
  const junit = path.join(reportDir, 'pytest.xml');
  const pytestStatus = run(path.join(root, '.venv', 'bin', 'python'), ['-m', 'pytest', 'scoring/tests', '-q', `--junitxml=${junit}`]);
  try {
    const xml = readFileSync(junit, 'utf8');
    const attribute = (name) => Number(new RegExp(`<testsuite[^>]* ${name}="(\\d+)"`).exec(xml)?.[1] ?? 0);
    const total = attribute('tests');
    const bad = attribute('failures') + attribute('errors');
    passed += total - bad - attribute('skipped');
    failed += bad;
    if (total === 0) failed += 1;
  } catch {
    failed += 1;
  }
  if (pytestStatus !== 0 && failed === 0) failed += 1;
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
