import type { WorkflowHandle } from '@temporalio/client';
import { abortSignal, retrySignal, statusQuery } from '../workflows/messages';
import type { BatchStatus } from '../workflows/summary';

/** Folders a scenario may score or run; each call makes a new folder under the recording's scratch folder. */
export interface RecordingContext {
  /** A folder holding a dozen sample digit images. */
  folderWithImages(name: string): string;
  emptyFolder(name: string): string;
  /** A code folder whose `score.py` is `script`. */
  codeFolder(name: string, script: string): string;
}

/** One batch whose history is recorded: its input, what the recorder does while it runs, and how it must end. */
export interface RecordingScenario {
  input(context: RecordingContext): unknown;
  /** Signals or cancels the running batch; the recorder then waits for it to close. */
  drive?(handle: WorkflowHandle): Promise<void>;
  expectedStatus: 'COMPLETED' | 'FAILED' | 'CANCELLED';
}

/** An entry script whose `init()` fails, so its job fails and the wait stage reports `JobFailed`. */
const FAILING_SCRIPT = 'def init():\n    raise RuntimeError("model store unreachable")\n\n\ndef run(mini_batch):\n    return mini_batch\n';
/** An entry script that takes a second per mini-batch, so a batch can be cancelled while its job runs. */
const SLOW_SCRIPT = 'import time\n\n\ndef init():\n    pass\n\n\ndef run(mini_batch):\n    time.sleep(1)\n    return [{"path": p} for p in mini_batch]\n';

/**
 * An entry script that reports the first item of every mini-batch as failed, so a batch with follow-up rounds has
 * items to score again, and some fail again in the next job.
 */
const FIRST_OF_EACH_FAILS_SCRIPT = [
  'import os, sys',
  '',
  '',
  'def init():',
  '    global ROOT',
  '    ROOT = sys.argv[sys.argv.index("--input_root") + 1]',
  '',
  '',
  'def run(mini_batch):',
  '    rows = []',
  '    for index, path in enumerate(mini_batch):',
  '        error = "ValueError: recorded failure" if index == 0 else None',
  '        rows.append({"path": os.path.relpath(path, ROOT), "error": error})',
  '    return rows',
  '',
].join('\n');

/**
 * Batches recorded for the replay tests, as the current workflow code runs them. The files labelled `v1` came from
 * the code before compensation and operator retries. They cover `scored`, `nothing-to-score` and a `vault-failed`
 * batch that failed at once, which the current code would hold for an operator instead. `v3` adds follow-up rounds.
 */
export const RECORDING_SCENARIOS: Record<string, RecordingScenario> = {
  scored: {
    input: (context) => ({ inputFolder: context.folderWithImages('scored'), miniBatchSize: 4, processCount: 1 }),
    expectedStatus: 'COMPLETED',
  },
  'nothing-to-score': {
    input: (context) => ({ inputFolder: context.emptyFolder('empty') }),
    expectedStatus: 'COMPLETED',
  },
  'operator-retry': {
    input: (context) => ({ inputFolder: context.folderWithImages('retry'), secretNames: ['no-such-secret'], processCount: 1 }),
    drive: async (handle) => {
      await waitForStatus(handle, (status) => status.pendingFailure?.stage === 'checkVaultAccess');
      await handle.signal(retrySignal, { secretNames: ['model-signing-key'] });
    },
    expectedStatus: 'COMPLETED',
  },
  'job-failed-aborted': {
    input: (context) => ({
      inputFolder: context.folderWithImages('aborted'),
      codeDirectory: context.codeFolder('failing-code', FAILING_SCRIPT),
      processCount: 1,
      assetsOnFailure: 'remove_created',
    }),
    drive: async (handle) => {
      await waitForStatus(handle, (status) => status.pendingFailure?.failureType === 'JobFailed');
      await handle.signal(abortSignal, { reason: 'recorded abort' });
    },
    expectedStatus: 'FAILED',
  },
  'follow-up-rounds': {
    input: (context) => ({
      inputFolder: context.folderWithImages('follow-up'),
      codeDirectory: context.codeFolder('first-fails-code', FIRST_OF_EACH_FAILS_SCRIPT),
      miniBatchSize: 4,
      processCount: 1,
      followUpRounds: 2,
    }),
    expectedStatus: 'COMPLETED',
  },
  cancelled: {
    input: (context) => ({
      inputFolder: context.folderWithImages('cancelled'),
      codeDirectory: context.codeFolder('slow-code', SLOW_SCRIPT),
      miniBatchSize: 1,
      processCount: 1,
    }),
    drive: async (handle) => {
      await waitForStatus(handle, (status) => status.currentStage === 'waitForJob');
      await handle.cancel();
    },
    expectedStatus: 'CANCELLED',
  },
};

async function waitForStatus(handle: WorkflowHandle, predicate: (status: BatchStatus) => boolean): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const status = await handle.query(statusQuery).catch(() => undefined);
    if (status && predicate(status)) return;
    if (Date.now() > deadline) throw new Error(`batch ${handle.workflowId} did not reach the expected state within 120 s; last status ${JSON.stringify(status)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
