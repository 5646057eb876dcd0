import { spawn } from 'node:child_process';
import path from 'node:path';
import { StageError } from '../../errors';
import { pathExists } from './files';

/** Python that parses a script without running it and prints the entry functions it lacks, one per line. */
const ENTRY_FUNCTION_CHECK = `
import ast, sys
with open(sys.argv[1], 'rb') as source:
    tree = ast.parse(source.read(), sys.argv[1])
defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
defined |= {target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets if isinstance(target, ast.Name)}
defined |= {alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names}
for name in ('init', 'run'):
    if name not in defined:
        print(name)
`;

/**
 * Fails early, with a message a person can act on, when the code directory or entry script is missing, is not
 * valid Python, or defines no `init` or `run` at module level. The script is parsed, never run.
 */
export async function checkEntryScript(python: string, codeDirectory: string, entryScript: string): Promise<void> {
  const scriptPath = path.join(codeDirectory, entryScript);
  if (!(await pathExists(codeDirectory))) {
    throw new StageError('NotFound', `codeDirectory ${codeDirectory} does not exist; check codeDirectory`, { codeDirectory });
  }
  if (!(await pathExists(scriptPath))) {
    throw new StageError('NotFound', `entry script ${scriptPath} not found; check entryScript and codeDirectory`, {
      entryScript: scriptPath,
    });
  }
  const missing = await findMissingEntryFunctions(python, scriptPath);
  if (missing.length > 0) {
    throw new StageError(
      'InvalidInput',
      `entry script ${scriptPath} defines no ${missing.map((name) => `${name}()`).join(' or ')}; ` +
        'a parallel job entry script must define init() and run(mini_batch)',
      { entryScript: scriptPath, missing },
    );
  }
}

function findMissingEntryFunctions(python: string, scriptPath: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, ['-c', ENTRY_FUNCTION_CHECK, scriptPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', (error) =>
      reject(new StageError('NotFound', `Python interpreter ${python} could not start (${error.message}); set AMLBATCH_PYTHON`)),
    );
    child.on('close', (code) => {
      if (code === 0) {
        resolve(stdout.split('\n').filter((line) => line !== ''));
        return;
      }
      const lastLine = stderr.trim().split('\n').pop() ?? '';
      reject(new StageError('InvalidInput', `entry script ${scriptPath} is not valid Python: ${lastLine}`, { entryScript: scriptPath }));
    });
  });
}
