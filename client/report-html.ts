/**
 * Writes one self-contained HTML page per batch: the stage timeline, throughput over time, the outcome counts of
 * the item ledger, a failures table and, when rows have a `label` field, the label distribution. Styles and charts
 * (SVG) are inline. The page has no scripts and loads nothing, which its Content-Security-Policy enforces, so it
 * can be mailed or archived as one file. Every text from the batch (file names, messages, labels) is HTML-escaped.
 */
import { writeFile } from 'node:fs/promises';
import type { LedgerCounts } from '../activities/ledger/build-ledger';
import { failureReasonLabel, readLedger, type LedgerReason } from '../activities/ledger/ledger-format';
import type { BatchSummary, StageRecord } from '../workflows/summary';

/** Items done at one moment of the job, as the progress line of `amlbatch score --wait` reports them. */
export interface ProgressSample {
  /** ISO 8601 time. */
  time: string;
  itemsDone: number;
}

export interface ReportFailure {
  path: string;
  reason: LedgerReason;
}

/** Report data read from the ledger file in one streaming pass. */
export interface ReportDetails {
  /** The first failed items, in manifest order. */
  failures: ReportFailure[];
  failuresTotal: number;
  /**
   * Scored items by their row's `label`: in label order when every label is listed, else the most frequent first.
   * Empty when no row has a label.
   */
  labels: { label: string; count: number }[];
  /** Scored items whose label is not among `labels`, and how many distinct labels they have (at least). */
  otherLabels: { items: number; distinct: number };
}

export interface ReportDetailOptions {
  /** Failed items listed; default 100. */
  maxFailures?: number;
  /** Labels drawn as bars; the rest are summed as "other". Default 30. */
  maxLabels?: number;
}

export interface BatchReport {
  summary: BatchSummary;
  progress: readonly ProgressSample[];
  counts: LedgerCounts;
  details: ReportDetails;
  /** Default: now. */
  generatedAt?: Date;
}

/** Distinct labels counted exactly; items with further labels are counted as "other", so memory stays bounded. */
const MAX_TRACKED_LABELS = 10_000;

/** Reads the ledger once for the failures table and the label distribution. */
export async function collectReportDetails(ledgerPath: string, options: ReportDetailOptions = {}): Promise<ReportDetails> {
  const maxFailures = options.maxFailures ?? 100;
  const maxLabels = options.maxLabels ?? 30;
  const failures: ReportFailure[] = [];
  let failuresTotal = 0;
  const labelCounts = new Map<string, number>();
  let untrackedItems = 0;

  for await (const record of readLedger(ledgerPath)) {
    if (record.state === 'failed') {
      failuresTotal += 1;
      if (failures.length < maxFailures) failures.push({ path: record.path, reason: record.reason ?? { kind: 'no_result' } });
      continue;
    }
    if (record.state !== 'scored' || record.row === undefined) continue;
    const label = record.row.label;
    if (label === undefined || label === null) continue;

    const key = typeof label === 'string' ? label : JSON.stringify(label);
    const count = labelCounts.get(key);
    if (count !== undefined) labelCounts.set(key, count + 1);
    else if (labelCounts.size < MAX_TRACKED_LABELS) labelCounts.set(key, 1);
    else untrackedItems += 1;
  }

  const ranked = [...labelCounts].map(([label, count]) => ({ label, count }));
  ranked.sort((a, b) => b.count - a.count || compareLabels(a.label, b.label));
  const displayed = ranked.slice(0, maxLabels);
  // When every label fits, label order reads better than frequency order (digits 0 to 9, for example).
  if (displayed.length === ranked.length && untrackedItems === 0) displayed.sort((a, b) => compareLabels(a.label, b.label));
  const hidden = ranked.slice(maxLabels);
  return {
    failures,
    failuresTotal,
    labels: displayed,
    otherLabels: {
      items: hidden.reduce((sum, entry) => sum + entry.count, 0) + untrackedItems,
      distinct: hidden.length + (untrackedItems > 0 ? 1 : 0),
    },
  };
}

/** Collects the details from `ledgerPath` and writes the report to `outputPath`, replacing an existing file. */
export async function writeBatchReport(
  outputPath: string,
  report: Omit<BatchReport, 'details'> & { ledgerPath: string; detailOptions?: ReportDetailOptions },
): Promise<void> {
  const details = await collectReportDetails(report.ledgerPath, report.detailOptions);
  await writeFile(outputPath, renderBatchReport({ ...report, details }), 'utf8');
}

/** Renders the report as one HTML document. */
export function renderBatchReport(report: BatchReport): string {
  const { summary, counts, details } = report;
  const generatedAt = (report.generatedAt ?? new Date()).toISOString();
  const title = `Batch ${summary.workflowId}`;

  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeHtml(title)}</title>`,
    `<style>${STYLE}</style>`,
    '</head>',
    '<body>',
    `<h1>${escapeHtml(title)}</h1>`,
    renderOverview(summary, generatedAt),
    renderOutcome(counts),
    renderStages(summary.stages),
    renderThroughput(report.progress),
    renderLabels(details),
    renderFailures(details, counts),
    renderRowProblems(counts),
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

const STYLE = `
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #1d2330; }
h1 { font-size: 1.5em; overflow-wrap: anywhere; }
h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #d5d9e0; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { text-align: left; padding: .25em .8em .25em 0; vertical-align: top; border-bottom: 1px solid #eceef2; }
td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; }
td.path { font-family: ui-monospace, monospace; overflow-wrap: anywhere; max-width: 40em; }
.note { color: #5b6475; }
.tiles { display: flex; flex-wrap: wrap; gap: .8em; }
.tile { border: 1px solid #d5d9e0; border-radius: 6px; padding: .5em 1em; min-width: 8em; }
.tile .value { font-size: 1.6em; font-weight: 600; }
.tile.scored .value { color: #1a7f37; } .tile.failed .value { color: #c62828; } .tile.excluded .value { color: #6e7781; }
svg { max-width: 100%; height: auto; }
svg text { font: 12px system-ui, sans-serif; fill: #1d2330; }
svg .axis { stroke: #8c95a6; stroke-width: 1; }
svg .grid { stroke: #eceef2; stroke-width: 1; }
svg .bar { fill: #3b6fd8; }
svg .line { fill: none; stroke: #3b6fd8; stroke-width: 2; }
svg .rate { fill: none; stroke: #e08a00; stroke-width: 1.5; }
svg .stage-completed { fill: #2e9d4f; } svg .stage-failed { fill: #c62828; } svg .stage-running { fill: #3b6fd8; }
svg .stage-awaiting_operator { fill: #e08a00; } svg .stage-cancelled, svg .stage-skipped, svg .stage-pending { fill: #9aa3b2; }
`;

function renderOverview(summary: BatchSummary, generatedAt: string): string {
  const rows: [string, string][] = [
    ['Backend', summary.backend],
    ['Outcome', summary.outcome],
    ['Job', summary.jobName ?? 'none'],
    ['Dataset', summary.dataset === undefined ? 'none' : `${summary.dataset.name}, version ${summary.dataset.version}`],
    ['Results file', summary.resultsFile ?? 'none'],
    ['Results SHA-256', summary.resultsSha256 ?? 'none'],
  ];
  if (summary.rescoreOf !== undefined) rows.push(['Rescore of', summary.rescoreOf]);
  for (const job of summary.jobs ?? []) {
    rows.push([`Job, round ${job.round ?? '?'}`, `${job.jobName}: ${job.status}, ${formatCount(job.items)} items`]);
  }
  if (summary.miniBatches !== undefined) {
    const { total, succeeded, failed } = summary.miniBatches;
    rows.push(['Mini-batches', `${formatCount(total)} total, ${formatCount(succeeded)} succeeded, ${formatCount(failed)} failed`]);
  }
  const body = rows.map(([name, value]) => `<tr><th>${escapeHtml(name)}</th><td class="path">${escapeHtml(value)}</td></tr>`).join('\n');
  return `<table class="overview">\n${body}\n</table>\n<p class="note">Report generated ${escapeHtml(generatedAt)}.</p>`;
}

function renderOutcome(counts: LedgerCounts): string {
  const tile = (kind: string, label: string, value: number): string =>
    `<div class="tile ${kind}" data-count="${kind}"><div class="value">${formatCount(value)}</div><div>${escapeHtml(label)}</div></div>`;
  const reasons = Object.entries(counts.failedByReason).sort((a, b) => b[1] - a[1]);
  const reasonRows = reasons
    .map(([reason, count]) => `<tr><td>${escapeHtml(reason)}</td><td class="number">${formatCount(count)}</td></tr>`)
    .join('\n');

  return [
    '<h2>Outcome</h2>',
    '<div class="tiles">',
    tile('items', 'items in the manifest', counts.items),
    tile('scored', 'scored', counts.scored),
    tile('failed', 'failed', counts.failed),
    tile('excluded', 'excluded', counts.excluded),
    '</div>',
    reasons.length === 0
      ? '<p class="note">No item failed.</p>'
      : `<table class="failed-by-reason">\n<tr><th>Failure reason</th><th class="number">Items</th></tr>\n${reasonRows}\n</table>`,
  ].join('\n');
}

function renderStages(stages: readonly StageRecord[]): string {
  if (stages.length === 0) return '<h2>Stages</h2>\n<p class="note">No stage ran.</p>';

  const starts = stages.map((stage) => parseTime(stage.startedAt));
  const ends = stages.map((stage, index) => stageEnd(stage, starts[index]));
  const known = starts.filter((start): start is number => start !== undefined);
  const origin = known.length === 0 ? 0 : Math.min(...known);
  const finish = Math.max(origin + 1, ...ends.filter((end): end is number => end !== undefined));

  const labelWidth = 170;
  const width = 900;
  const rowHeight = 24;
  const plotWidth = width - labelWidth - 90;
  const height = stages.length * rowHeight + 30;
  const x = (time: number): number => labelWidth + ((time - origin) / (finish - origin)) * plotWidth;

  const bars = stages.map((stage, index) => {
    const y = index * rowHeight + 4;
    const label = `<text x="0" y="${y + 14}">${escapeHtml(stage.stage)}</text>`;
    const start = starts[index];
    const end = ends[index];
    if (start === undefined || end === undefined) {
      return `${label}<text x="${labelWidth}" y="${y + 14}" class="note">${escapeHtml(stage.state)}</text>`;
    }
    const barWidth = Math.max(2, x(end) - x(start));
    const tooltip = `${stage.stage}: ${stage.state}, ${formatDuration(end - start)}${stage.error === undefined ? '' : `, ${stage.error}`}`;
    return (
      `${label}<rect class="stage-${escapeHtml(stage.state)}" x="${x(start).toFixed(1)}" y="${y}" width="${barWidth.toFixed(1)}" height="${rowHeight - 8}">` +
      `<title>${escapeHtml(tooltip)}</title></rect>` +
      `<text x="${(x(start) + barWidth + 4).toFixed(1)}" y="${y + 14}">${escapeHtml(formatDuration(end - start))}</text>`
    );
  });
  const axisY = stages.length * rowHeight + 8;
  const svg =
    `<svg data-chart="stages" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="Stage timeline">` +
    `<line class="axis" x1="${labelWidth}" y1="${axisY}" x2="${labelWidth + plotWidth}" y2="${axisY}"/>` +
    `<text x="${labelWidth}" y="${axisY + 16}">0 s</text>` +
    `<text x="${labelWidth + plotWidth}" y="${axisY + 16}" text-anchor="end">${escapeHtml(formatDuration(finish - origin))}</text>` +
    `${bars.join('')}</svg>`;

  const rows = stages
    .map(
      (stage) =>
        `<tr><td>${escapeHtml(stage.stage)}</td><td>${escapeHtml(stage.state)}</td><td>${escapeHtml(stage.startedAt ?? '')}</td>` +
        `<td class="number">${stage.durationMs === undefined ? '' : escapeHtml(formatDuration(stage.durationMs))}</td>` +
        `<td>${escapeHtml(stage.error ?? '')}</td></tr>`,
    )
    .join('\n');
  return [
    '<h2>Stages</h2>',
    svg,
    '<table class="stages">',
    '<tr><th>Stage</th><th>State</th><th>Started</th><th class="number">Duration</th><th>Error</th></tr>',
    rows,
    '</table>',
  ].join('\n');
}

/** Returns the end of a stage: its start plus its duration, else its end time, or undefined when it never started. */
function stageEnd(stage: StageRecord, start: number | undefined): number | undefined {
  if (start === undefined) return undefined;
  if (stage.durationMs !== undefined) return start + stage.durationMs;
  return parseTime(stage.endedAt) ?? start;
}

function renderThroughput(progress: readonly ProgressSample[]): string {
  const samples = progress
    .map((sample) => ({ time: parseTime(sample.time), itemsDone: sample.itemsDone }))
    .filter((sample): sample is { time: number; itemsDone: number } => sample.time !== undefined && Number.isFinite(sample.itemsDone))
    .sort((a, b) => a.time - b.time);
  if (samples.length < 2) {
    return '<h2>Throughput</h2>\n<p class="note">Fewer than two progress samples were recorded, so there is no throughput to draw.</p>';
  }

  const origin = samples[0].time;
  const span = Math.max(1, samples[samples.length - 1].time - origin);
  const maxItems = Math.max(1, ...samples.map((sample) => sample.itemsDone));
  const rates = samples.slice(1).map((sample, index) => {
    const previous = samples[index];
    const seconds = (sample.time - previous.time) / 1000;
    return { time: sample.time, rate: seconds > 0 ? Math.max(0, sample.itemsDone - previous.itemsDone) / seconds : 0 };
  });
  const maxRate = Math.max(1e-9, ...rates.map((entry) => entry.rate));

  const width = 900;
  const height = 260;
  const left = 70;
  const right = 110;
  const top = 10;
  const plotHeight = 200;
  const plotWidth = width - left - right;
  const x = (time: number): number => left + ((time - origin) / span) * plotWidth;
  const yItems = (items: number): number => top + plotHeight - (items / maxItems) * plotHeight;
  const yRate = (rate: number): number => top + plotHeight - (rate / maxRate) * plotHeight;

  const itemsLine = samples.map((sample) => `${x(sample.time).toFixed(1)},${yItems(sample.itemsDone).toFixed(1)}`).join(' ');
  const rateLine = rates.map((entry) => `${x(entry.time).toFixed(1)},${yRate(entry.rate).toFixed(1)}`).join(' ');
  const bottom = top + plotHeight;
  const averageRate = (samples[samples.length - 1].itemsDone - samples[0].itemsDone) / (span / 1000);

  const svg =
    `<svg data-chart="throughput" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="Items done over time">` +
    `<line class="grid" x1="${left}" y1="${top}" x2="${left + plotWidth}" y2="${top}"/>` +
    `<line class="axis" x1="${left}" y1="${bottom}" x2="${left + plotWidth}" y2="${bottom}"/>` +
    `<line class="axis" x1="${left}" y1="${top}" x2="${left}" y2="${bottom}"/>` +
    `<text x="${left - 6}" y="${top + 4}" text-anchor="end">${formatCount(maxItems)}</text>` +
    `<text x="${left - 6}" y="${bottom}" text-anchor="end">0</text>` +
    `<text x="${left + plotWidth + 6}" y="${top + 4}">${escapeHtml(formatRate(maxRate))}</text>` +
    `<text x="${left}" y="${bottom + 18}">0 s</text>` +
    `<text x="${left + plotWidth}" y="${bottom + 18}" text-anchor="end">${escapeHtml(formatDuration(span))}</text>` +
    `<polyline class="line" points="${itemsLine}"><title>items done</title></polyline>` +
    `<polyline class="rate" points="${rateLine}"><title>items per second</title></polyline>` +
    `<text x="${left + 8}" y="${height - 6}">blue: items done (left axis); orange: items per second (right axis)</text>` +
    '</svg>';
  return [
    '<h2>Throughput</h2>',
    svg,
    `<p>${formatCount(samples[samples.length - 1].itemsDone)} items done over ${escapeHtml(formatDuration(span))}, ` +
      `${escapeHtml(formatRate(averageRate))} on average.</p>`,
  ].join('\n');
}

function renderLabels(details: ReportDetails): string {
  if (details.labels.length === 0) return '';
  const entries = [...details.labels];
  if (details.otherLabels.items > 0) entries.push({ label: 'other labels', count: details.otherLabels.items });

  const maxCount = Math.max(1, ...entries.map((entry) => entry.count));
  const labelWidth = 180;
  const barArea = 600;
  const rowHeight = 22;
  const width = labelWidth + barArea + 90;
  const height = entries.length * rowHeight + 6;
  const bars = entries.map((entry, index) => {
    const y = index * rowHeight + 3;
    const barWidth = Math.max(1, (entry.count / maxCount) * barArea);
    const shownLabel = entry.label.length > 28 ? `${entry.label.slice(0, 27)}…` : entry.label;
    return (
      `<text x="${labelWidth - 8}" y="${y + 13}" text-anchor="end">${escapeHtml(shownLabel)}</text>` +
      `<rect class="bar" data-label="${escapeHtml(entry.label)}" x="${labelWidth}" y="${y}" width="${barWidth.toFixed(1)}" height="${rowHeight - 6}">` +
      `<title>${escapeHtml(`${entry.label}: ${formatCount(entry.count)}`)}</title></rect>` +
      `<text x="${(labelWidth + barWidth + 6).toFixed(1)}" y="${y + 13}">${formatCount(entry.count)}</text>`
    );
  });
  return [
    '<h2>Labels of scored items</h2>',
    `<svg data-chart="labels" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="Label distribution">${bars.join('')}</svg>`,
  ].join('\n');
}

function renderFailures(details: ReportDetails, counts: LedgerCounts): string {
  if (details.failuresTotal === 0) return '<h2>Failures</h2>\n<p class="note">No item failed.</p>';
  const rows = details.failures
    .map(
      (failure) =>
        `<tr><td class="path">${escapeHtml(failure.path)}</td><td>${escapeHtml(failureReasonLabel(failure.reason))}</td>` +
        `<td>${escapeHtml(failure.reason.message ?? '')}</td></tr>`,
    )
    .join('\n');
  const listed = details.failures.length;
  const note =
    listed < details.failuresTotal
      ? `The first ${formatCount(listed)} of ${formatCount(details.failuresTotal)} failed items, in manifest order; the ledger lists all of them.`
      : `All ${formatCount(details.failuresTotal)} failed items, in manifest order.`;
  const mismatch =
    details.failuresTotal === counts.failed ? '' : ` The ledger file lists ${formatCount(details.failuresTotal)} failures but its counts say ${formatCount(counts.failed)}.`;
  return [
    '<h2>Failures</h2>',
    `<p class="note">${escapeHtml(note + mismatch)}</p>`,
    '<table class="failures">',
    '<tr><th>Path</th><th>Reason</th><th>Message</th></tr>',
    rows,
    '</table>',
  ].join('\n');
}

function renderRowProblems(counts: LedgerCounts): string {
  const lines: string[] = [];
  if (counts.duplicateRows > 0) lines.push(`<li>${formatCount(counts.duplicateRows)} duplicate rows were collapsed into their item's row.</li>`);
  if (counts.unknownRows > 0) {
    const examples = counts.unknownRowExamples.map((example) => `line ${example.line}: ${example.path}`);
    lines.push(`<li>${formatCount(counts.unknownRows)} rows name a path that is not in the manifest${exampleList(examples)}</li>`);
  }
  if (counts.unkeyedRows > 0) {
    const examples = counts.unkeyedRowExamples.map((example) => `line ${example.line}: ${example.text}`);
    lines.push(`<li>${formatCount(counts.unkeyedRows)} rows are not JSON objects with a string "path"${exampleList(examples)}</li>`);
  }
  if (counts.excludedItemsWithRows > 0) lines.push(`<li>${formatCount(counts.excludedItemsWithRows)} excluded items have rows, which were left out.</li>`);
  if (counts.unknownFailureRecords > 0) lines.push(`<li>${formatCount(counts.unknownFailureRecords)} failure records name a path that is not in the manifest.</li>`);
  if (lines.length === 0) return '';
  return ['<h2>Rows not merged</h2>', '<ul class="row-problems">', ...lines, '</ul>'].join('\n');
}

function exampleList(examples: string[]): string {
  if (examples.length === 0) return '.';
  return `, such as:<ul>${examples.map((example) => `<li class="path">${escapeHtml(example)}</li>`).join('')}</ul>`;
}

/** Escapes text for HTML element content and double- or single-quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => HTML_ESCAPES[char] ?? char);
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

function parseTime(time: string | undefined): number | undefined {
  if (time === undefined) return undefined;
  const value = Date.parse(time);
  return Number.isNaN(value) ? undefined : value;
}

function formatCount(value: number): string {
  return value.toLocaleString('en-US');
}

function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds - minutes * 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function formatRate(itemsPerSecond: number): string {
  return `${itemsPerSecond >= 100 ? Math.round(itemsPerSecond).toLocaleString('en-US') : itemsPerSecond.toFixed(1)} items/s`;
}

/** Orders labels numerically when both are numbers, else by code units. */
function compareLabels(a: string, b: string): number {
  const numberA = Number(a);
  const numberB = Number(b);
  if (a !== '' && b !== '' && Number.isFinite(numberA) && Number.isFinite(numberB)) return numberA - numberB;
  if (a < b) return -1;
  if (a > b) return 1;
  return 0;
}
