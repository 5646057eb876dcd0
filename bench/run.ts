/**
 * `npm run bench`: runs every benchmark one after another in its own process and prints their tables, headed by
 * the machine they ran on. Copy the output into docs/benchmarks.md with the date.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const BENCHMARKS = ['runner-bench', 'history-bench', 'ledger-bench'];

let failed = false;
for (const name of BENCHMARKS) {
  process.stdout.write(`\n## ${name}\n\n`);
  const result = spawnSync(process.execPath, [path.join(__dirname, `${name}.js`)], { stdio: 'inherit' });
  if (result.status !== 0) failed = true;
}
process.exitCode = failed ? 1 : 0;
