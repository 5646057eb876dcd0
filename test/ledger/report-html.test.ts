import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Browser } from 'playwright-core';
import { buildLedger, type LedgerCounts } from '../../activities/ledger/build-ledger';
import { collectReportDetails, escapeHtml, renderBatchReport, writeBatchReport, type ProgressSample } from '../../client/report-html';
import type { BatchSummary } from '../../workflows/summary';

const CHROMIUM = '/usr/bin/chromium';
const HOSTILE_NAME = `<img src=x onerror="alert('x')">&amp;.png`;

let folder: string;

beforeEach(() => {
  folder = mkdtempSync(path.join(os.tmpdir(), 'report-html-test-'));
});

afterEach(() => {
  rmSync(folder, { recursive: true, force: true });
});

function summaryOf(overrides: Partial<BatchSummary> = {}): BatchSummary {
  return {
    workflowId: 'batch-<test>&"1"',
    backend: 'local',
    outcome: 'scored',
    itemsTotal: 6,
    itemsScored: 4,
    itemsFailed: 2,
    resultsFile: '/results/parallel_run_step.txt',
    jobName: 'job-1',
    miniBatches: { total: 3, succeeded: 2, failed: 1 },
    stages: [
      { stage: 'authenticate', state: 'completed', startedAt: '2026-12-04T20:18:41.000Z', endedAt: '2026-12-04T20:18:41.111Z', durationMs: 111 },
      { stage: 'submitScoringJob', state: 'completed', startedAt: '2026-12-04T20:18:41.200Z', durationMs: 900 },
      { stage: 'waitForJob', state: 'failed', startedAt: '2026-12-04T20:18:42.200Z', durationMs: 65_000, error: 'job <failed> & "stopped"' },
      { stage: 'collectResults', state: 'skipped' },
    ],
    ...overrides,
  };
}

const PROGRESS: ProgressSample[] = [
  { time: '2026-12-04T20:18:42.200Z', itemsDone: 0 },
  { time: '2026-12-04T20:18:52.200Z', itemsDone: 2 },
  { time: '2026-12-04T20:19:12.200Z', itemsDone: 6 },
];

/** Builds a ledger of seven items: four scored (labels 3, 3, 7 and a hostile one), two failed, one excluded. */
async function buildSampleLedger(): Promise<{ ledgerPath: string; counts: LedgerCounts }> {
  const items = ['a.png', 'b.png', 'x.png', HOSTILE_NAME, 'd.png', 'skip.tmp', 'e.png'];
  const manifestPath = path.join(folder, 'manifest.jsonl');
  writeFileSync(manifestPath, items.map((item) => `${JSON.stringify({ path: item, size: 1 })}\n`).join(''));
  const resultsPath = path.join(folder, 'results.jsonl');
  const rows = [
    { path: 'a.png', label: 3, confidence: 0.9 },
    { path: 'b.png', label: 3, confidence: 0.8 },
    { path: 'x.png', label: '</svg><script>alert(1)</script>', confidence: 0.5 },
    { path: HOSTILE_NAME, label: null, confidence: null, error: 'OSError: cannot identify <image> file' },
    { path: 'e.png', label: 7, confidence: 0.7 },
    { path: 'stray.png', label: 1, confidence: 0.1 },
  ];
  writeFileSync(resultsPath, rows.map((row) => `${JSON.stringify(row)}\n`).join(''));
  const ledgerPath = path.join(folder, 'ledger.jsonl');
  const { counts } = await buildLedger({ manifestPath, resultsPath, ledgerPath, exclude: ['*.tmp'], temporaryFolder: folder });
  return { ledgerPath, counts };
}

async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium is not installed at ${CHROMIUM}; install it with: apt-get install -y chromium`);
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
}

describe('batch report', () => {
  test('details list failures and labels', async () => {
    const { ledgerPath } = await buildSampleLedger();

    const details = await collectReportDetails(ledgerPath, { maxFailures: 1 });

    expect(details.failuresTotal).toBe(2);
    expect(details.failures).toEqual([{ path: HOSTILE_NAME, reason: { kind: 'row_error', errorType: 'OSError', message: 'OSError: cannot identify <image> file' } }]);
    expect(details.labels).toEqual([
      { label: '3', count: 2 },
      { label: '7', count: 1 },
      { label: '</svg><script>alert(1)</script>', count: 1 },
    ]);
    expect(details.otherLabels).toEqual({ items: 0, distinct: 0 });
  });

  test('labels beyond the limit are summed as other', async () => {
    const { ledgerPath } = await buildSampleLedger();

    const details = await collectReportDetails(ledgerPath, { maxLabels: 1 });

    expect(details.labels).toEqual([{ label: '3', count: 2 }]);
    expect(details.otherLabels).toEqual({ items: 2, distinct: 2 });
  });

  test('batch text is escaped', async () => {
    const { ledgerPath, counts } = await buildSampleLedger();
    const details = await collectReportDetails(ledgerPath);

    const html = renderBatchReport({ summary: summaryOf(), progress: PROGRESS, counts, details });

    expect(html).not.toContain('<img');
    expect(html).not.toContain('<script');
    expect(html).not.toContain('<test>');
    expect(html).toContain(escapeHtml(HOSTILE_NAME));
    expect(html).toContain('batch-&lt;test&gt;&amp;&quot;1&quot;');
    expect(html).toContain('job &lt;failed&gt; &amp; &quot;stopped&quot;');
    expect(escapeHtml(`<a href='x'>&"`)).toBe('&lt;a href=&#39;x&#39;&gt;&amp;&quot;');
  });

  test('rescore lists its jobs', async () => {
    const { ledgerPath, counts } = await buildSampleLedger();
    const summary = summaryOf({
      rescoreOf: 'batch-7',
      jobs: [
        { jobName: 'job-a', round: 2, status: 'Canceled', items: 9, miniBatches: { total: 3, succeeded: 1, failed: 0 } },
        { jobName: 'job-b', round: 3, status: 'Completed', items: 4, miniBatches: { total: 1, succeeded: 1, failed: 0 } },
      ],
    });

    const html = renderBatchReport({ summary, progress: PROGRESS, counts, details: await collectReportDetails(ledgerPath) });

    expect(html).toContain('<th>Rescore of</th><td class="path">batch-7</td>');
    expect(html).toContain('<th>Job, round 2</th><td class="path">job-a: Canceled, 9 items</td>');
    expect(html).toContain('<th>Job, round 3</th><td class="path">job-b: Completed, 4 items</td>');
  });

  test('page loads nothing external', async () => {
    const { ledgerPath, counts } = await buildSampleLedger();

    const html = renderBatchReport({ summary: summaryOf(), progress: PROGRESS, counts, details: await collectReportDetails(ledgerPath) });

    expect(html).toContain(`content="default-src 'none'; style-src 'unsafe-inline'"`);
    expect(html).not.toMatch(/<(script|link|img|iframe|object|embed)\b/i);
    expect(html).not.toMatch(/<[^>]*\s(src|href)=/i);
    expect(html).not.toMatch(/url\(/i);
  });

  test('empty progress and no labels render notes', async () => {
    const counts: LedgerCounts = (await buildSampleLedger()).counts;

    const html = renderBatchReport({
      summary: summaryOf({ stages: [] }),
      progress: [],
      counts,
      details: { failures: [], failuresTotal: 0, labels: [], otherLabels: { items: 0, distinct: 0 } },
    });

    expect(html).toContain('Fewer than two progress samples were recorded');
    expect(html).toContain('No stage ran.');
    expect(html).not.toContain('data-chart="labels"');
  });

  test('renders in Chromium without errors', async () => {
    const { ledgerPath, counts } = await buildSampleLedger();
    const reportPath = path.join(folder, 'report.html');
    await writeBatchReport(reportPath, { summary: summaryOf(), progress: PROGRESS, counts, ledgerPath, generatedAt: new Date('2026-12-04T21:00:00Z') });

    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const consoleErrors: string[] = [];
      const pageErrors: string[] = [];
      const requests: string[] = [];
      page.on('console', (message) => {
        if (message.type() === 'error') consoleErrors.push(message.text());
      });
      page.on('pageerror', (error) => pageErrors.push(error.message));
      page.on('request', (request) => requests.push(request.url()));
      const dialogs: string[] = [];
      page.on('dialog', (dialog) => {
        dialogs.push(dialog.message());
        void dialog.dismiss();
      });

      const url = pathToFileURL(reportPath).href;
      await page.goto(url, { waitUntil: 'load' });

      expect(consoleErrors).toEqual([]);
      expect(pageErrors).toEqual([]);
      expect(dialogs).toEqual([]);
      expect(requests).toEqual([url]);

      expect(await page.title()).toBe('Batch batch-<test>&"1"');
      expect((await page.locator('[data-count="items"] .value').textContent())?.trim()).toBe(String(counts.items));
      expect((await page.locator('[data-count="scored"] .value').textContent())?.trim()).toBe(String(counts.scored));
      expect((await page.locator('[data-count="failed"] .value').textContent())?.trim()).toBe(String(counts.failed));
      expect((await page.locator('[data-count="excluded"] .value').textContent())?.trim()).toBe(String(counts.excluded));

      const bars = page.locator('svg[data-chart="labels"] rect.bar');
      expect(await bars.count()).toBe(3);
      expect(await bars.nth(2).getAttribute('data-label')).toBe('</svg><script>alert(1)</script>');
      const box = await bars.first().boundingBox();
      expect(box?.width ?? 0).toBeGreaterThan(0);
      expect(await page.locator('svg[data-chart="stages"] rect').count()).toBe(3);
      expect(await page.locator('svg[data-chart="throughput"] polyline').count()).toBe(2);

      const failureRows = page.locator('table.failures tr');
      expect(await failureRows.count()).toBe(3);
      expect(await page.locator('table.failures').textContent()).toContain('OSError: cannot identify <image> file');
      expect(await page.locator('table.failures td.path').first().textContent()).toBe(HOSTILE_NAME);
      expect(await page.locator('ul.row-problems').textContent()).toContain('line 6: stray.png');
    } finally {
      await browser.close();
    }
  });

  test('report file is written whole', async () => {
    const { ledgerPath, counts } = await buildSampleLedger();
    const reportPath = path.join(folder, 'report.html');

    await writeBatchReport(reportPath, { summary: summaryOf(), progress: PROGRESS, counts, ledgerPath });

    const html = readFileSync(reportPath, 'utf8');
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(html.trimEnd().endsWith('</html>')).toBe(true);
  });
});
