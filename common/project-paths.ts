import { existsSync } from 'node:fs';
import path from 'node:path';

/**
 * Finds the amlbatch project root: the nearest folder above this file that contains `package.json`.
 * The same code runs from TypeScript sources (tests) and from `dist/` (worker, CLI), so paths to
 * non-compiled files such as Python scripts are built from the root, never from `__dirname`.
 */
export function projectRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`amlbatch project root not found above ${__dirname}; reinstall the package`);
    dir = parent;
  }
}

/**
 * Returns the path of the compiled JavaScript file for a TypeScript module given relative to the project root,
 * for example `activities/backends/local/runner/job-driver`. Child processes run compiled code, so `npm run build`
 * must have run first, and the error states that when it has not.
 */
export function compiledModulePath(relativeModule: string): string {
  const file = path.join(projectRoot(), 'dist', `${relativeModule}.js`);
  if (!existsSync(file)) {
    throw new Error(`compiled module ${file} is missing; run \`npm run build\` first`);
  }
  return file;
}

/** Returns the Python interpreter that runs entry scripts: `AMLBATCH_PYTHON`, else the project's `.venv`. */
export function defaultPythonExecutable(): string {
  return process.env.AMLBATCH_PYTHON ?? path.join(projectRoot(), '.venv', 'bin', 'python');
}
