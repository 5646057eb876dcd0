import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { BatchSummary } from '../../workflows/summary';
import { createTimeSkippingEnv } from '../support/temporal-env';
import { createFakeWorker, startBatch } from './helpers';
import { ScriptedBackend } from './scripted-backend';

// Waiting on a long job costs a fixed number of history events. On the time-skipping test server the scripted job
// runs until the server's clock has moved on by the job's length. Each wait attempt polls for a short window and
// ends with a benign JobStillRunning failure, and the server skips the two hours to the next attempt.

let env: TestWorkflowEnvironment;

beforeAll(async () => {
  env = await createTimeSkippingEnv();
});

afterAll(async () => {
  await env?.teardown();
});

const HOUR_MS = 3600_000;

interface JobRun {
  summary: BatchSummary;
  eventCount: number;
  waitAttempts: number;
  polls: number;
}

/** Runs a batch whose job takes `jobMs` of the test server's time and returns its history's size. */
async function runJobOfLength(jobMs: number): Promise<JobRun> {
  const backend = new ScriptedBackend();
  let endsAt: number | undefined;
  backend.jobDone = async () => {
    const now = await env.currentTimeMs();
    endsAt ??= now + jobMs;
    return now >= endsAt;
  };
  const { worker, taskQueue } = await createFakeWorker(env, backend, { jobWaitWindowMs: 50, jobRecheckDelayMs: 2 * HOUR_MS });

  return worker.runUntil(async () => {
    const handle = await startBatch(env, taskQueue, { inputFolder: '/fake/data' });
    const summary = (await handle.result()) as BatchSummary;
    const events = (await handle.fetchHistory()).events ?? [];
    const waitStarted = events.find((event) => {
      const scheduledId = event.activityTaskStartedEventAttributes?.scheduledEventId;
      const scheduled = events.find((candidate) => candidate.eventId?.toString() === scheduledId?.toString());
      return scheduled?.activityTaskScheduledEventAttributes?.activityType?.name === 'waitForJob';
    });
    return {
      summary,
      eventCount: events.length,
      waitAttempts: waitStarted?.activityTaskStartedEventAttributes?.attempt ?? 0,
      polls: backend.polls,
    };
  });
}

describe('history of a long batch', () => {
  test('three-day job adds no events', async () => {
    const short = await runJobOfLength(HOUR_MS);
    const long = await runJobOfLength(3 * 24 * HOUR_MS);

    expect(long.summary.outcome).toBe('scored');
    const waitStage = long.summary.stages.find((stage) => stage.stage === 'waitForJob');
    expect(waitStage?.durationMs).toBeGreaterThanOrEqual(3 * 24 * HOUR_MS);
    // One attempt per two hours of the job: 36 attempts, all behind a single started event.
    expect(long.waitAttempts).toBeGreaterThanOrEqual(36);
    expect(short.waitAttempts).toBeLessThanOrEqual(2);
    expect(long.polls).toBeGreaterThan(short.polls);
    expect(long.eventCount).toBe(short.eventCount);
    expect(long.eventCount).toBeLessThan(80);
  });
});
