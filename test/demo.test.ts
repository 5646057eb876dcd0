import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../common/dev-server';
import { compiledModulePath } from '../common/project-paths';

// `npm run demo` as a new user runs it, on its own server port so it never meets the suite's shared server.

test('demo scores every sample image and stops what it started', async () => {
  const port = await freePort();
  const workspace = path.join(mkdtempSync(path.join(os.tmpdir(), 'amlbatch-demo-')), 'workspace');

  const result = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [compiledModulePath('scripts/demo')],
      {
        env: { ...process.env, TEMPORAL_ADDRESS: `127.0.0.1:${port}`, AMLBATCH_LOCAL_WORKSPACE: workspace },
        timeout: 180_000,
      },
      (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
    );
  });

  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  expect(result.stdout).toContain(`Starting a Temporal dev server at 127.0.0.1:${port} (Web UI on port ${port + 1000})`);
  expect(result.stdout).toMatch(/Items: 360 total, 360 scored, 0 failed/);
  expect(result.stdout).toContain(`Results: ${path.join(workspace, 'results')}`);
  expect(result.stdout).toContain(`Temporal UI: http://localhost:${port + 1000}/namespaces/default/workflows/batch-`);
  const accuracy = Number(/Accuracy against the folder labels: ([0-9.]+)/.exec(result.stdout)?.[1]);
  expect(accuracy).toBeGreaterThanOrEqual(0.9);

  // The demo stopped its server: nothing answers on its port any more.
  const { isPortInUse } = await import('../common/dev-server');
  expect(await isPortInUse('127.0.0.1', port)).toBe(false);
});
