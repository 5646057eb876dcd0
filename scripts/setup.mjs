#!/usr/bin/env node
// Installs whatever a fresh clone lacks, then builds: npm packages, the project's Python virtual environment
// (Temporal servers, the scoring package's dependencies, pytest), the TypeScript build, the sample model and
// its image folder. Each step is skipped when its inputs have not changed, so running it again is cheap.
// Needs only Node.js and python3 on PATH; uses no npm package, because it runs before they are installed.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const venv = path.join(root, '.venv');
const venvPython = path.join(venv, 'bin', 'python');
const quiet = process.argv.includes('--quiet');

function step(message) {
  if (!quiet) console.error(`[setup] ${message}`);
}

function run(command, args, options = {}) {
  try {
    execFileSync(command, args, { cwd: root, stdio: quiet ? ['ignore', 'ignore', 'inherit'] : 'inherit', ...options });
  } catch (error) {
    console.error(`[setup] failed: ${command} ${args.join(' ')} (exit ${error.status ?? error.message})`);
    process.exit(1);
  }
}

function withoutKey(object, key) {
  const copy = { ...object };
  delete copy[key];
  return copy;
}

function hashFiles(files) {
  const hash = createHash('sha256');
  for (const file of files) hash.update(file).update(readFileSync(path.join(root, file)));
  return hash.digest('hex');
}

/** Runs `action` when the hash of `inputs` differs from the one stored in `marker`, then stores the new hash. */
function whenChanged(marker, inputs, action) {
  const digest = hashFiles(inputs);
  const markerPath = path.join(root, marker);
  if (existsSync(markerPath) && readFileSync(markerPath, 'utf8') === digest) return;
  action();
  mkdirSync(path.dirname(markerPath), { recursive: true });
  writeFileSync(markerPath, digest);
}

// 1. npm packages, exactly as locked.
whenChanged('node_modules/.amlbatch-setup', ['package.json', 'package-lock.json'], () => {
  step('installing npm packages (npm ci)');
  run('npm', ['ci', '--no-audit', '--no-fund']);
});

// 2. Python virtual environment with the Temporal servers, pytest and the scoring package's dependencies.
if (!existsSync(venvPython)) {
  step('creating the Python virtual environment .venv');
  run('python3', ['-m', 'venv', venv]);
}
whenChanged('.venv/.amlbatch-setup', ['requirements-tools.txt', 'scoring/requirements.txt'], () => {
  step('installing Python packages into .venv');
  run(venvPython, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check',
    '-r', 'requirements-tools.txt', '-r', 'scoring/requirements.txt']);
});

// 3. TypeScript build: the worker, CLI and job driver run compiled code from dist/.
step('compiling TypeScript (tsc)');
run(path.join(root, 'node_modules', '.bin', 'tsc'), ['-p', '.', '--incremental', '--tsBuildInfoFile', 'dist/.tsbuildinfo']);

// 4. The sample: a signing key in the local secret source, a signed digits model and held-out digit images.
const secretsFile = path.join(root, '.amlbatch', 'secrets.json');
const model = path.join(root, 'scoring', 'model', 'digits-model.joblib');
const sampleDir = path.join(root, 'samples', 'digits');
if (!existsSync(model) || !existsSync(sampleDir) || !existsSync(secretsFile) || statSync(model).size === 0) {
  step('training the sample digits model and writing the sample images to samples/digits');
  mkdirSync(path.dirname(secretsFile), { recursive: true });
  run(venvPython, ['-m', 'amlbatch_scoring.train', '--output-dir', path.join(root, 'scoring', 'model'),
    '--sample-dir', sampleDir, '--create-key'], {
    cwd: path.join(root, 'scoring'),
    // The sample's key lives in the local secret source, so a Key Vault configured for batches must not be used here.
    env: { ...withoutKey(process.env, 'AMLBATCH_KEY_VAULT_URL'), AMLBATCH_SECRETS_FILE: secretsFile },
  });
}

// 5. Chromium for the Temporal Web UI test (test/ui/). Only a hint, because installing it needs root; .ci/run
// installs it on CI. Printed even with --quiet, because without it that test fails.
if (!existsSync('/usr/bin/chromium')) {
  console.error(
    '[setup] hint: /usr/bin/chromium is missing, so test/ui/temporal-ui.test.ts will fail; on Debian or Ubuntu install ' +
      'it with `sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium`',
  );
}
step('ready');
