/**
 * Builds the item ledger (see ledger-format.ts) from a manifest, a results file and optional failure records. A batch
 * may score its failed items again in follow-up rounds. Their rows are appended to the same results file and each
 * round writes its own failure records, so the caller passes the line where each round's rows begin and the round of
 * each failure records file.
 *
 * Neither the manifest nor the rows are held in memory. The build partitions by a hash of each item's path:
 *   1. The manifest is streamed into P partition files. A one-byte-per-item sequence file remembers which partition
 *      each item went to, in manifest order.
 *   2. The rows and the failure records are streamed into P partition files each, by the same hash of their key.
 *   3. Each partition is joined in memory on its own: its manifest items go into a Map, its rows and failure
 *      records are looked up in it, and its ledger lines are written in manifest order into an output partition.
 *   4. The sequence file is replayed to interleave the output partitions back into manifest order.
 * Memory contains one partition (about 2 MiB of input, see choosePartitionCount) plus fixed buffers. Manifest order is
 * kept without sorting, so an unsorted manifest, such as an Azure blob listing, needs nothing extra.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseFailureRecord } from './failure-records';
import { PathSelector } from './glob';
import type { FailureKind, LedgerReason } from './ledger-format';
import { FAILURE_KINDS, failureReasonLabel } from './ledger-format';
import {
  HashingLineWriter,
  LineCursor,
  MAX_PARTITIONS,
  PartitionedWriter,
  choosePartitionCount,
  partitionFile,
  partitionOf,
  publishFile,
  readLineBatches,
  requireAbsent,
  temporaryNameFor,
} from './line-files';
import { readManifestEntry } from './manifest-lines';

export interface BuildLedgerOptions {
  /** JSON Lines manifest, one `{"path", "size"}` per item, in any order. */
  manifestPath: string;
  /**
   * The job's append_row output: one row per line, keyed by its `path` field. Without it (summary_only jobs),
   * every item that has no failure record counts as scored.
   */
  resultsPath?: string;
  /**
   * 1-based line numbers of `resultsPath` where the rows of rounds 2, 3, ... begin, in ascending order. Lines before
   * the first entry are round 1, and two equal entries mean a round that appended no rows. Default: one round.
   */
  resultsRoundStarts?: readonly number[];
  /** Failure records files of the runner (see failure-records.ts), each with the 1-based round that wrote it. */
  failureRecords?: readonly FailureRecordsFile[];
  /**
   * Reason attached to items that end `no_result`, such as the failure of the job read from its logs. Without it,
   * their reason is only `{"kind": "no_result"}`.
   */
  noResultReason?: NoResultReason;
  /** Glob patterns (see glob.ts); when given, only items that match one of them are counted. */
  include?: readonly string[];
  /** Glob patterns of items to leave out; they win over `include`. */
  exclude?: readonly string[];
  /** Ledger file to create; it must not exist. */
  ledgerPath: string;
  /** Folder for the temporary partition files, about twice the input size; default: the OS temporary folder. */
  temporaryFolder?: string;
  /** Partition count, 1 to 256; default: one per 2 MiB of the larger of the manifest and the rows. */
  partitions?: number;
  /** Unknown and unkeyed rows listed as examples; default 5. */
  maxExamples?: number;
  /** Failed items listed in `LedgerCounts.failureExamples`; default 10. */
  maxFailureExamples?: number;
  /** Called after each batch of lines, for heartbeats. */
  onProgress?: (progress: LedgerProgress) => void;
  signal?: AbortSignal;
}

export interface FailureRecordsFile {
  path: string;
  /** 1-based round of the job that wrote the records. */
  round: number;
}

export interface NoResultReason {
  /** Short name of the cause, such as an exception class name. It becomes part of the `failedByReason` key. */
  errorType?: string;
  message: string;
}

/** A failed item, as listed in `LedgerCounts.failureExamples`. */
export interface FailureExample {
  path: string;
  /** The `failedByReason` label of the failure, such as `exception ValueError`. */
  reason: string;
  /** The reason's message, at most 300 characters. */
  message?: string;
}

export interface LedgerProgress {
  phase: 'manifest' | 'results' | 'failure_records' | 'join' | 'write';
  /**
   * Lines read in this phase (in `failure_records`, of all files so far), or partitions joined in `join`, or ledger
   * lines written in `write`.
   */
  done: number;
}

export interface LedgerCounts {
  items: number;
  scored: number;
  failed: number;
  excluded: number;
  failedByKind: Record<FailureKind, number>;
  /** Failed items by kind and error type, such as `exception ValueError`, `row_error OSError` or `timeout`. */
  failedByReason: Record<string, number>;
  /** The first failed items in manifest order, at most `maxFailureExamples` of them. */
  failureExamples: FailureExample[];
  /** Non-blank lines of the results file. */
  rows: number;
  /**
   * Rows for an item beyond its first row of the same round, such as from a mini-batch that ran twice. Each item
   * keeps one row (see `buildLedger`).
   */
  duplicateRows: number;
  /**
   * First rows of an item in a round after the first, when an earlier round already had a row for it, such as a
   * row that reported an error in round 1 and was scored again in round 2. They are not duplicates.
   */
  rescoredRows: number;
  /** Rows whose `path` is not a manifest item; they are left out of the ledger. */
  unknownRows: number;
  /** The first unknown rows, by line number in the results file. */
  unknownRowExamples: { line: number; path: string }[];
  /** Rows that are not JSON objects with a string `path`. */
  unkeyedRows: number;
  unkeyedRowExamples: { line: number; text: string }[];
  /** Excluded items that have a row all the same; their rows are not embedded. */
  excludedItemsWithRows: number;
  failureRecords: number;
  /** Failure records whose `path` is not a manifest item. */
  unknownFailureRecords: number;
}

export interface LedgerResult {
  ledgerPath: string;
  /** SHA-256 of the ledger file, hex. */
  sha256: string;
  counts: LedgerCounts;
}

/** Maximum length of an error message copied from a row into its ledger reason; the row itself is embedded whole. */
const MAX_REASON_MESSAGE_CHARS = 1000;
/** Maximum length of a failure example's message, including the `...` that marks a cut. */
const MAX_FAILURE_EXAMPLE_MESSAGE_CHARS = 300;
/** Maximum length of an unkeyed row's text kept as an example. */
const MAX_EXAMPLE_TEXT_CHARS = 200;
/** Distinct `failedByReason` keys per kind; further error types are counted under `<kind> (other types)`. */
const MAX_REASONS_PER_KIND = 50;
/** Characters of ledger text written at a time. */
const WRITE_CHUNK_CHARS = 1 << 20;
/** Read size for each of the P output partitions while they are interleaved. */
const MERGE_READ_CHUNK_BYTES = 1 << 16;

/** Manifest partition line prefixes: the item is selected, or excluded by no include pattern, or by exclude pattern n. */
const SELECTED = 'i';
const NOT_INCLUDED = 'n';
const EXCLUDED_BY = 'x';

/**
 * Builds the ledger file and returns its counts. Rows are matched to items by their `path` field, compared exactly
 * as the manifest spells it (no Unicode normalization, no URL decoding). An item's state is decided in this order:
 *   1. excluded, when the include and exclude patterns leave it out;
 *   2. scored, when a row of any round has an `error` field that is absent or null; the first such row is kept;
 *   3. failed, by the latest round that has a row or a failure record for the item. Within that round, a row that
 *      reports an error gives `row_error` (with the round's first such row), else its first failure record gives the
 *      record's kind;
 *   4. failed with `no_result` (and `noResultReason`), unless there is no results file, in which case it counts as
 *      scored.
 * A row takes precedence over a failure record of the same round. Azure ML documents that a mini-batch whose run()
 * returned too few elements fails with only the gap counted as failed items. The elements it did return count as
 * scored.
 * NOTE: without a results file (summary_only), an item that failed in one round and was scored in a later one has
 * no evidence of the later success, so it stays failed with the earlier round's failure record.
 */
export async function buildLedger(options: BuildLedgerOptions): Promise<LedgerResult> {
  const selector = new PathSelector(options.include, options.exclude);
  checkOptions(options);
  await requireAbsent(options.ledgerPath, 'ledger file');
  const inputBytes = await measureInputs(options);
  const partitions = options.partitions ?? choosePartitionCount(inputBytes);

  const folder = await mkdtemp(path.join(options.temporaryFolder ?? os.tmpdir(), 'amlbatch-ledger-'));
  const build = new LedgerBuild(options, selector, partitions, folder);
  try {
    await build.partitionManifest();
    await build.partitionResults();
    await build.partitionFailureRecords();
    await build.joinPartitions();
    const temporary = temporaryNameFor(options.ledgerPath);
    let sha256: string;
    try {
      sha256 = await build.writeLedger(temporary);
    } catch (error) {
      await rm(temporary, { force: true });
      throw error;
    }
    await publishFile(temporary, options.ledgerPath);
    return { ledgerPath: options.ledgerPath, sha256, counts: build.counts };
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}

/** Throws an error naming the option and the fix when an option other than the files is invalid. */
function checkOptions(options: BuildLedgerOptions): void {
  const { partitions, resultsRoundStarts, failureRecords, maxFailureExamples, noResultReason } = options;
  if (partitions !== undefined && (!Number.isSafeInteger(partitions) || partitions < 1 || partitions > MAX_PARTITIONS)) {
    throw new Error(`partitions ${partitions} is invalid; pass an integer from 1 to ${MAX_PARTITIONS}, or leave it unset`);
  }

  if (resultsRoundStarts !== undefined && resultsRoundStarts.length > 0) {
    if (options.resultsPath === undefined) {
      throw new Error('resultsRoundStarts is set without resultsPath; pass the results file that the rounds appended to');
    }
    resultsRoundStarts.forEach((line, index) => {
      const previous = index === 0 ? 1 : resultsRoundStarts[index - 1];
      if (!Number.isSafeInteger(line) || line < previous) {
        throw new Error(
          `resultsRoundStarts[${index}] is ${line}; each entry must be an integer line number of at least 1 and no ` +
            `smaller than the entry before it (${JSON.stringify(resultsRoundStarts)})`,
        );
      }
    });
  }

  for (const [index, file] of (failureRecords ?? []).entries()) {
    if (typeof file.path !== 'string' || file.path === '') {
      throw new Error(`failureRecords[${index}].path is missing; pass the path of the failure records file`);
    }
    if (!Number.isSafeInteger(file.round) || file.round < 1) {
      throw new Error(`failureRecords[${index}].round is ${file.round} for ${file.path}; pass the 1-based round of the job that wrote it`);
    }
  }

  if (maxFailureExamples !== undefined && (!Number.isSafeInteger(maxFailureExamples) || maxFailureExamples < 0)) {
    throw new Error(`maxFailureExamples ${maxFailureExamples} is invalid; pass a non-negative integer, or leave it unset for 10`);
  }
  if (noResultReason !== undefined && typeof noResultReason.message !== 'string') {
    throw new Error('noResultReason.message is missing; pass the text that explains why items have no result');
  }
}

/** Returns the larger of the manifest's size and the size of the rows and failure records together, in bytes. */
async function measureInputs(options: BuildLedgerOptions): Promise<number> {
  const sizeOf = async (file: string | undefined, description: string): Promise<number> => {
    if (file === undefined) return 0;
    try {
      return (await stat(file)).size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${description} ${file} not found; check the path`, { cause: error });
      throw error;
    }
  };
  const manifest = await sizeOf(options.manifestPath, 'manifest');
  const results = await sizeOf(options.resultsPath, 'results file');
  let failures = 0;
  for (const file of options.failureRecords ?? []) failures += await sizeOf(file.path, 'failure records file');
  return Math.max(manifest, results + failures);
}

/** Join state of one manifest item. */
interface ItemSlot {
  encodedPath: string;
  /** 0-based position of the item in the manifest. */
  index: number;
  /** SELECTED, NOT_INCLUDED, or EXCLUDED_BY followed by the exclude pattern's index. */
  selection: string;
  /** Round of the item's latest row so far. */
  lastRowRound?: number;
  /** Text of the item's first row without an error. */
  scoredRowText?: string;
  /** The first row that reports an error in the latest round that has such rows: its round, reason JSON and text. */
  errorRowRound?: number;
  errorRowReason?: string;
  errorRowText?: string;
  /** The first failure record of the latest round that has failure records: its round and reason JSON. */
  failureRound?: number;
  failureReason?: string;
}

class LedgerBuild {
  readonly counts: LedgerCounts = {
    items: 0,
    scored: 0,
    failed: 0,
    excluded: 0,
    failedByKind: Object.fromEntries(FAILURE_KINDS.map((kind) => [kind, 0])) as Record<FailureKind, number>,
    failedByReason: {},
    failureExamples: [],
    rows: 0,
    duplicateRows: 0,
    rescoredRows: 0,
    unknownRows: 0,
    unknownRowExamples: [],
    unkeyedRows: 0,
    unkeyedRowExamples: [],
    excludedItemsWithRows: 0,
    failureRecords: 0,
    unknownFailureRecords: 0,
  };

  private readonly maxExamples: number;
  private readonly maxFailureExamples: number;
  private readonly sequenceFile: string;
  private readonly exclusionReasons: string[];
  private readonly noResultReason: string;
  private readonly reasonKindsSeen = new Map<string, Set<string>>();
  /** The first failed items of the partition being joined, with their manifest positions. */
  private partitionFailureExamples: { index: number; example: FailureExample }[] = [];

  constructor(
    private readonly options: BuildLedgerOptions,
    private readonly selector: PathSelector,
    private readonly partitions: number,
    private readonly folder: string,
  ) {
    this.maxExamples = options.maxExamples ?? 5;
    this.maxFailureExamples = options.maxFailureExamples ?? 10;
    this.sequenceFile = path.join(folder, 'sequence');
    this.exclusionReasons = (options.exclude ?? []).map((pattern) => JSON.stringify({ kind: 'exclude_pattern', pattern }));
    this.noResultReason = JSON.stringify(noResultReasonOf(options.noResultReason));
  }

  /**
   * Step 1: manifest items into partitions, as `<selection>\t<manifest index>\t<JSON path>`, and each item's partition
   * into the sequence file.
   */
  async partitionManifest(): Promise<void> {
    const { manifestPath } = this.options;
    const writer = new PartitionedWriter(this.folder, 'manifest', this.partitions);
    const sequence = new SequenceWriter(this.sequenceFile);
    try {
      for await (const batch of readLineBatches(manifestPath)) {
        this.options.signal?.throwIfAborted();
        for (let offset = 0; offset < batch.lines.length; offset += 1) {
          const line = batch.lines[offset];
          if (line.trim() === '') continue;
          const entry = readManifestEntry(line, batch.firstLineNumber + offset, manifestPath);
          const partition = partitionOf(entry.path, this.partitions);
          writer.write(partition, `${this.selectionOf(entry.path)}\t${this.counts.items}\t${JSON.stringify(entry.path)}`);
          sequence.append(partition);
          this.counts.items += 1;
        }
        this.options.onProgress?.({ phase: 'manifest', done: batch.firstLineNumber + batch.lines.length - 1 });
      }
    } finally {
      writer.close();
      sequence.close();
    }
  }

  /** Step 2a: keyed rows into partitions, as `<line>\t<round>\t<JSON path>\t<error reason JSON or ''>\t<row text>`. */
  async partitionResults(): Promise<void> {
    const { resultsPath } = this.options;
    const roundStarts = this.options.resultsRoundStarts ?? [];
    const writer = new PartitionedWriter(this.folder, 'results', this.partitions);
    let round = 1;
    let lineCount = 0;
    try {
      if (resultsPath === undefined) return;
      for await (const batch of readLineBatches(resultsPath)) {
        this.options.signal?.throwIfAborted();
        lineCount = batch.firstLineNumber + batch.lines.length - 1;
        for (let offset = 0; offset < batch.lines.length; offset += 1) {
          const text = batch.lines[offset].trim();
          if (text === '') continue;
          this.counts.rows += 1;
          const lineNumber = batch.firstLineNumber + offset;
          // Round r + 1 begins at roundStarts[r - 1].
          while (round <= roundStarts.length && lineNumber >= roundStarts[round - 1]) round += 1;
          const row = parseKeyedRow(text);
          if (row === undefined) {
            this.counts.unkeyedRows += 1;
            if (this.counts.unkeyedRowExamples.length < this.maxExamples) {
              this.counts.unkeyedRowExamples.push({ line: lineNumber, text: truncate(text, MAX_EXAMPLE_TEXT_CHARS) });
            }
            continue;
          }
          const reason = row.error === undefined || row.error === null ? '' : JSON.stringify(rowErrorReason(row.error));
          // JSON allows a lone `\r` as white space between tokens, but readline-based readers of the ledger split
          // lines on it. Re-serializing the row drops it.
          const rowText = text.includes('\r') ? JSON.stringify(row) : text;
          writer.write(partitionOf(row.path, this.partitions), `${lineNumber}\t${round}\t${JSON.stringify(row.path)}\t${reason}\t${rowText}`);
        }
        this.options.onProgress?.({ phase: 'results', done: lineCount });
      }
    } finally {
      writer.close();
    }

    // A round may append no rows and so start right after the last line, but never later.
    const lastStart = roundStarts[roundStarts.length - 1];
    if (lastStart !== undefined && lastStart > lineCount + 1) {
      throw new Error(
        `resultsRoundStarts ends with line ${lastStart}, but results file ${resultsPath} has ${lineCount} lines; pass ` +
          `the line numbers where each round's rows begin in this file, at most ${lineCount + 1}`,
      );
    }
  }

  /**
   * Step 2b: failure records into partitions, as `<round>\t<JSON path>\t<reason JSON>`, one file after the other in
   * the order of `failureRecords`.
   */
  async partitionFailureRecords(): Promise<void> {
    const writer = new PartitionedWriter(this.folder, 'failures', this.partitions);
    let linesRead = 0;
    try {
      for (const { path: file, round } of this.options.failureRecords ?? []) {
        for await (const batch of readLineBatches(file)) {
          this.options.signal?.throwIfAborted();
          for (let offset = 0; offset < batch.lines.length; offset += 1) {
            const line = batch.lines[offset];
            if (line.trim() === '') continue;
            const { path: itemPath, ...reason } = parseFailureRecord(line, batch.firstLineNumber + offset, file);
            if (reason.message !== undefined) reason.message = truncate(reason.message, MAX_REASON_MESSAGE_CHARS);
            writer.write(partitionOf(itemPath, this.partitions), `${round}\t${JSON.stringify(itemPath)}\t${JSON.stringify(reason)}`);
            this.counts.failureRecords += 1;
          }
          linesRead += batch.lines.length;
          this.options.onProgress?.({ phase: 'failure_records', done: linesRead });
        }
      }
    } finally {
      writer.close();
    }
  }

  /** Step 3: joins each partition in memory and writes its ledger lines, in manifest order, to an output partition. */
  async joinPartitions(): Promise<void> {
    const unknownCandidates: { line: number; path: string }[] = [];
    let failureCandidates: { index: number; example: FailureExample }[] = [];
    for (let partition = 0; partition < this.partitions; partition += 1) {
      this.options.signal?.throwIfAborted();
      const slots = await this.loadManifestPartition(partition);
      await this.applyResults(partition, slots, unknownCandidates);
      await this.applyFailureRecords(partition, slots);
      this.partitionFailureExamples = [];
      this.writeOutputPartition(partition, slots);

      // A partition lists its items in manifest order, so its first failures include every one of the overall first
      // failures that it contains. Merging them after each partition keeps at most twice the limit in memory.
      failureCandidates = [...failureCandidates, ...this.partitionFailureExamples]
        .sort((a, b) => a.index - b.index)
        .slice(0, this.maxFailureExamples);
      this.options.onProgress?.({ phase: 'join', done: partition + 1 });
    }
    unknownCandidates.sort((a, b) => a.line - b.line);
    this.counts.unknownRowExamples = unknownCandidates.slice(0, this.maxExamples);
    this.counts.failureExamples = failureCandidates.map((candidate) => candidate.example);
  }

  /** Step 4: interleaves the output partitions in manifest order into `destination`; returns its SHA-256. */
  async writeLedger(destination: string): Promise<string> {
    const cursors = Array.from({ length: this.partitions }, (_, partition) =>
      LineCursor.open(partitionFile(this.folder, 'ledger', partition), MERGE_READ_CHUNK_BYTES),
    );
    const out = await HashingLineWriter.create(destination);
    let written = 0;
    try {
      for await (const sequenceChunk of readSequence(this.sequenceFile)) {
        this.options.signal?.throwIfAborted();
        for (const partition of sequenceChunk) {
          const cursor = cursors[partition];
          const line = cursor.takeBuffered() ?? (await cursor.next());
          if (line === undefined) throw new Error(`ledger partition ${partition} ended before the manifest did; this is a bug in buildLedger`);
          await out.writeLine(line);
          written += 1;
        }
        this.options.onProgress?.({ phase: 'write', done: written });
      }
      return await out.finish();
    } finally {
      await out.close();
      await Promise.all(cursors.map((cursor) => cursor.close()));
    }
  }

  private selectionOf(relativePath: string): string {
    if (this.selector.selectsAll) return SELECTED;
    const exclusion = this.selector.exclusionOf(relativePath);
    if (exclusion === undefined) return SELECTED;
    if (exclusion.kind === 'no_include_pattern') return NOT_INCLUDED;
    return `${EXCLUDED_BY}${(this.options.exclude ?? []).indexOf(exclusion.pattern)}`;
  }

  private async loadManifestPartition(partition: number): Promise<Map<string, ItemSlot>> {
    const slots = new Map<string, ItemSlot>();
    for await (const batch of readLineBatches(partitionFile(this.folder, 'manifest', partition))) {
      for (const line of batch.lines) {
        if (line === '') continue;
        const first = line.indexOf('\t');
        const second = line.indexOf('\t', first + 1);
        const encodedPath = line.slice(second + 1);
        if (slots.has(encodedPath)) {
          throw new Error(
            `manifest ${this.options.manifestPath} lists ${encodedPath} more than once; a manifest must list each file ` +
              'once, so build it again from the input folder',
          );
        }
        slots.set(encodedPath, { encodedPath, index: Number(line.slice(first + 1, second)), selection: line.slice(0, first) });
      }
    }
    return slots;
  }

  private async applyResults(partition: number, slots: Map<string, ItemSlot>, unknownCandidates: { line: number; path: string }[]): Promise<void> {
    let unknownInPartition = 0;
    for await (const batch of readLineBatches(partitionFile(this.folder, 'results', partition))) {
      for (const line of batch.lines) {
        if (line === '') continue;
        const first = line.indexOf('\t');
        const second = line.indexOf('\t', first + 1);
        const third = line.indexOf('\t', second + 1);
        const fourth = line.indexOf('\t', third + 1);
        const encodedPath = line.slice(second + 1, third);
        const slot = slots.get(encodedPath);

        if (slot === undefined) {
          this.counts.unknownRows += 1;
          // Partition files keep results-file order, so a partition's first rows have its smallest line numbers.
          if (unknownInPartition < this.maxExamples) {
            unknownCandidates.push({ line: Number(line.slice(0, first)), path: JSON.parse(encodedPath) as string });
          }
          unknownInPartition += 1;
          continue;
        }

        // Partition files keep results-file order, and rounds follow each other in the file, so rounds only grow.
        const round = Number(line.slice(first + 1, second));
        const firstRowOfItem = slot.lastRowRound === undefined;
        if (slot.lastRowRound === round) this.counts.duplicateRows += 1;
        else if (!firstRowOfItem) this.counts.rescoredRows += 1;
        slot.lastRowRound = round;

        if (slot.selection !== SELECTED) {
          if (firstRowOfItem) this.counts.excludedItemsWithRows += 1;
          continue;
        }
        if (slot.scoredRowText !== undefined) continue;
        const reason = line.slice(third + 1, fourth);
        if (reason === '') {
          slot.scoredRowText = line.slice(fourth + 1);
          slot.errorRowReason = undefined;
          slot.errorRowText = undefined;
        } else if (slot.errorRowRound === undefined || slot.errorRowRound < round) {
          slot.errorRowRound = round;
          slot.errorRowReason = reason;
          slot.errorRowText = line.slice(fourth + 1);
        }
      }
    }
  }

  private async applyFailureRecords(partition: number, slots: Map<string, ItemSlot>): Promise<void> {
    for await (const batch of readLineBatches(partitionFile(this.folder, 'failures', partition))) {
      for (const line of batch.lines) {
        if (line === '') continue;
        const first = line.indexOf('\t');
        const second = line.indexOf('\t', first + 1);
        const slot = slots.get(line.slice(first + 1, second));
        if (slot === undefined) {
          this.counts.unknownFailureRecords += 1;
          continue;
        }
        // The files may come in any round order. Within a round, the first record is kept.
        const round = Number(line.slice(0, first));
        if (slot.failureRound === undefined || slot.failureRound < round) {
          slot.failureRound = round;
          slot.failureReason = line.slice(second + 1);
        }
      }
    }
  }

  private writeOutputPartition(partition: number, slots: Map<string, ItemSlot>): void {
    const descriptor = openSync(partitionFile(this.folder, 'ledger', partition), 'wx');
    try {
      let pending: string[] = [];
      let pendingChars = 0;
      for (const slot of slots.values()) {
        const line = this.ledgerLine(slot);
        pending.push(line, '\n');
        pendingChars += line.length + 1;
        if (pendingChars >= WRITE_CHUNK_CHARS) {
          writeSync(descriptor, pending.join(''));
          pending = [];
          pendingChars = 0;
        }
      }
      if (pending.length > 0) writeSync(descriptor, pending.join(''));
    } finally {
      closeSync(descriptor);
    }
  }

  private ledgerLine(slot: ItemSlot): string {
    const head = `{"path":${slot.encodedPath},"state":`;

    if (slot.selection !== SELECTED) {
      this.counts.excluded += 1;
      const reason = slot.selection === NOT_INCLUDED ? '{"kind":"no_include_pattern"}' : this.exclusionReasons[Number(slot.selection.slice(1))];
      return `${head}"excluded","reason":${reason}}`;
    }
    if (slot.scoredRowText !== undefined) {
      this.counts.scored += 1;
      return `${head}"scored","row":${slot.scoredRowText}}`;
    }
    // A row that reports an error wins over a failure record of the same round, but not over one of a later round.
    if (slot.errorRowReason !== undefined && slot.errorRowText !== undefined && (slot.errorRowRound ?? 0) >= (slot.failureRound ?? 0)) {
      this.countFailure(slot, slot.errorRowReason);
      return `${head}"failed","reason":${slot.errorRowReason},"row":${slot.errorRowText}}`;
    }
    if (slot.failureReason !== undefined) {
      this.countFailure(slot, slot.failureReason);
      return `${head}"failed","reason":${slot.failureReason}}`;
    }
    if (this.options.resultsPath === undefined) {
      this.counts.scored += 1;
      return `${head}"scored"}`;
    }
    this.countFailure(slot, this.noResultReason);
    return `${head}"failed","reason":${this.noResultReason}}`;
  }

  /** Counts a failed item by kind and reason, and keeps it as an example while the partition has fewer than the limit. */
  private countFailure(slot: ItemSlot, reasonJson: string): void {
    const reason = JSON.parse(reasonJson) as LedgerReason;
    if (this.partitionFailureExamples.length < this.maxFailureExamples) {
      const example: FailureExample = { path: JSON.parse(slot.encodedPath) as string, reason: failureReasonLabel(reason) };
      if (reason.message !== undefined) example.message = shorten(reason.message, MAX_FAILURE_EXAMPLE_MESSAGE_CHARS);
      this.partitionFailureExamples.push({ index: slot.index, example });
    }

    const kind = reason.kind as FailureKind;
    this.counts.failed += 1;
    this.counts.failedByKind[kind] += 1;

    let label = failureReasonLabel(reason);
    const labels = this.reasonKindsSeen.get(kind) ?? new Set<string>();
    this.reasonKindsSeen.set(kind, labels);
    if (!labels.has(label)) {
      if (labels.size >= MAX_REASONS_PER_KIND) label = `${kind} (other types)`;
      else labels.add(label);
    }
    this.counts.failedByReason[label] = (this.counts.failedByReason[label] ?? 0) + 1;
  }
}

/** Parses a row that is a JSON object with a string `path`, and returns undefined for any other line. */
function parseKeyedRow(text: string): ({ path: string; error?: unknown } & Record<string, unknown>) | undefined {
  if (!text.startsWith('{')) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const row = value as Record<string, unknown>;
  return typeof row.path === 'string' ? (row as { path: string } & Record<string, unknown>) : undefined;
}

/**
 * Builds the reason of a row that reports an error. The sample entry script writes `"<ExceptionType>: <message>"`, so a
 * leading Python-style type name becomes `errorType`.
 */
function rowErrorReason(error: unknown): LedgerReason {
  const text = typeof error === 'string' ? error : JSON.stringify(error);
  const typeName = /^([A-Za-z_][\w.]*): /.exec(text)?.[1];
  return { kind: 'row_error', ...(typeName === undefined ? {} : { errorType: typeName }), message: truncate(text, MAX_REASON_MESSAGE_CHARS) };
}

/** Builds the reason of items without a result: `{"kind":"no_result"}` plus the caller's errorType and message, if any. */
function noResultReasonOf(extra: NoResultReason | undefined): LedgerReason {
  if (extra === undefined) return { kind: 'no_result' };
  return {
    kind: 'no_result',
    ...(extra.errorType === undefined || extra.errorType === '' ? {} : { errorType: extra.errorType }),
    message: truncate(extra.message, MAX_REASON_MESSAGE_CHARS),
  };
}

/** Keeps the first `maxChars` characters of `text` and appends `...` when it cuts. */
function truncate(text: string, maxChars: number): string {
  return text.length > maxChars ? `${text.slice(0, maxChars)}...` : text;
}

/** Cuts `text` to at most `maxChars` characters, the `...` that marks the cut included. */
function shorten(text: string, maxChars: number): string {
  return text.length > maxChars ? `${text.slice(0, maxChars - 3)}...` : text;
}

/** Bytes buffered before the sequence file is written. */
const SEQUENCE_CHUNK_BYTES = 1 << 16;

/** Appends one byte per item, the item's partition, to the sequence file. */
class SequenceWriter {
  private readonly descriptor: number;
  private readonly buffer = Buffer.allocUnsafe(SEQUENCE_CHUNK_BYTES);
  private length = 0;

  constructor(file: string) {
    this.descriptor = openSync(file, 'wx');
  }

  append(partition: number): void {
    this.buffer[this.length] = partition;
    this.length += 1;
    if (this.length === SEQUENCE_CHUNK_BYTES) this.flush();
  }

  close(): void {
    try {
      this.flush();
    } finally {
      closeSync(this.descriptor);
    }
  }

  private flush(): void {
    if (this.length > 0) writeSync(this.descriptor, this.buffer, 0, this.length);
    this.length = 0;
  }
}

async function* readSequence(file: string): AsyncGenerator<Uint8Array> {
  const handle = await open(file, 'r');
  const buffer = Buffer.allocUnsafe(SEQUENCE_CHUNK_BYTES);
  try {
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, SEQUENCE_CHUNK_BYTES, null);
      if (bytesRead === 0) return;
      yield buffer.subarray(0, bytesRead);
    }
  } finally {
    await handle.close();
  }
}
