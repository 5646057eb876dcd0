import { DeterminismViolationError } from '@temporalio/workflow';
import { Worker, bundleWorkflowCode } from '@temporalio/worker';
import { workflowBundle } from '../support/temporal-env';
import { loadHistory, patchIds, recordedHistories } from './history-file';

// Replays every recorded batchScoring history against the current workflow code, so a change that would break a
// running batch fails here. Files ending in -v1 were recorded before compensation, operator retries and search
// attributes. They replay through the old path that `patched('durable-batch')` keeps. Record new files with
// `node dist/scripts/record-history.js --label <version>` (see scripts/record-history.ts).

const histories = recordedHistories();

describe('recorded histories', () => {
  test('include histories of every workflow code version', () => {
    const labels = new Set(histories.map(({ workflowId }) => workflowId.split('-').pop()));
    expect(labels.has('v1')).toBe(true);
    expect(labels.has('v2')).toBe(true);
    expect(labels.has('v3')).toBe(true);
  });

  test.each(histories.map((history) => [history.workflowId, history]))('%s replays on the current code', async (_name, history) => {
    await Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, loadHistory(history.file), history.workflowId);
  });

  test.each(histories.map((history) => [history.workflowId, history]))('%s carries its version\'s patch marker', (_name, history) => {
    const expected = history.workflowId.endsWith('-v1') ? [] : ['durable-batch'];
    expect(patchIds(history.file)).toEqual(expected);
  });

  test('reordered stages fail the replay', async () => {
    const reordered = await bundleWorkflowCode({ workflowsPath: require.resolve('./fixtures/reordered-workflow'), logger: quietLogger });
    const scored = histories.find(({ workflowId }) => workflowId === 'scored-v2');
    expect(scored).toBeDefined();

    await expect(Worker.runReplayHistory({ workflowBundle: reordered }, loadHistory(scored!.file), scored!.workflowId)).rejects.toBeInstanceOf(
      DeterminismViolationError,
    );
  });
});

const quietLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: (message: string, meta?: Record<string, unknown>) => console.error(message, meta),
};
