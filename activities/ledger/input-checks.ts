/**
 * Checks of a batch's input before anything is submitted: the manifest (streamed, never held in memory) and the
 * entry script's program arguments. Each problem becomes one InputIssue with a count, the first few examples and
 * a message that states the fix. Errors mean the batch should not be submitted; warnings mean it may run but
 * some items or settings are at risk.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { MAX_PARTITIONS, PartitionedWriter, choosePartitionCount, partitionFile, partitionOf, readLineBatches } from './line-files';
import { readManifestEntry } from './manifest-lines';
import { runtimeFlagAbbreviating, runtimeFlagNamed } from './runtime-arguments';

export type InputIssueCode =
  | 'empty_input'
  | 'duplicate_path'
  | 'file_folder_collision'
  | 'unicode_normalization_collision'
  | 'file_exceeds_timeout'
  | 'mini_batch_exceeds_timeout'
  | 'whitespace_in_name'
  | 'url_delimiter_in_name'
  | 'percent_in_name'
  | 'backslash_in_name'
  | 'control_character_in_name'
  | 'non_ascii_name'
  | 'decomposed_unicode_name'
  | 'reserved_runtime_argument'
  | 'runtime_tuning_argument'
  | 'argument_abbreviates_runtime_flag';

export interface InputIssue {
  code: InputIssueCode;
  severity: 'error' | 'warning';
  /** Description of the problem, with its numbers, and the fix. */
  message: string;
  /** Items, pairs or arguments affected. */
  count: number;
  /** The first affected paths or arguments. */
  examples: string[];
}

export interface InputCheckOptions {
  /** JSON Lines manifest, one `{"path", "size"}` per file. */
  manifestPath: string;
  /** The input folder, named in messages. */
  inputFolder?: string;
  programArguments?: readonly string[];
  /** Seconds one run() call may take. With `measuredBytesPerSecond` it enables the size checks. */
  runInvocationTimeout?: number;
  /** Files per run() call; the local runner forms mini-batches from consecutive manifest items. */
  miniBatchSize?: number;
  /** Scoring rate measured on this entry script, in input bytes per second; without it sizes are not checked. */
  measuredBytesPerSecond?: number;
  /** Folder for temporary partition files; default: the OS temporary folder. */
  temporaryFolder?: string;
  /** Partition count for the collision checks, 1 to 256; default: one per 2 MiB of manifest. */
  partitions?: number;
  /** Examples per issue; default 5. */
  maxExamples?: number;
  signal?: AbortSignal;
}

export interface InputCheckReport {
  itemCount: number;
  totalBytes: number;
  errors: InputIssue[];
  warnings: InputIssue[];
}

const NON_ASCII = /[\u0080-\uffff]/;

/** True when `name` contains a C0 control character (U+0000 to U+001F) or DEL (U+007F). */
function hasControlCharacter(name: string): boolean {
  for (let index = 0; index < name.length; index += 1) {
    const code = name.charCodeAt(index);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

/** A name check: which names it flags, and the message for them. */
interface NameRule {
  code: InputIssueCode;
  test: (name: string) => boolean;
  describe: (count: number) => string;
}

const NAME_RULES: readonly NameRule[] = [
  {
    code: 'whitespace_in_name',
    test: (name) => /\s/u.test(name),
    describe: (count) =>
      `${counted(count, 'file name contains', 'file names contain')} white space. URLs encode a space as %20 or +, and a command line splits on it ` +
      'unless quoted, so a tool that builds either by hand breaks these names; rename the files if a tool fails on them',
  },
  {
    code: 'url_delimiter_in_name',
    test: (name) => /[#?&+]/.test(name),
    describe: (count) =>
      `${counted(count, 'file name contains', 'file names contain')} #, ?, & or +. Unless encoded, # and ? end the path of a URL, & splits a query ` +
      'string and + decodes as a space, so a tool that builds blob URLs by hand truncates or changes these names; ' +
      'rename the files to be safe',
  },
  {
    code: 'percent_in_name',
    test: (name) => name.includes('%'),
    describe: (count) =>
      `${counted(count, 'file name contains', 'file names contain')} %. A tool that decodes a name one more time than it was encoded turns %20 into a ` +
      'space and rejects a % that starts no valid escape, so the name changes or the file is not found; rename the files',
  },
  {
    code: 'backslash_in_name',
    test: (name) => name.includes('\\'),
    describe: (count) =>
      `${counted(count, 'file name contains', 'file names contain')} a backslash. Windows and some Azure Storage tools read it as a folder separator, ` +
      'so the name changes on upload or download; rename the files',
  },
  {
    code: 'control_character_in_name',
    test: hasControlCharacter,
    describe: (count) =>
      `${counted(count, 'file name contains', 'file names contain')} control characters such as a line break or tab. Line-based logs and many tools ` +
      'split or drop them; rename the files',
  },
  {
    code: 'non_ascii_name',
    test: (name) => NON_ASCII.test(name),
    describe: (count) =>
      `${counted(count, 'file name contains', 'file names contain')} non-ASCII characters, such as accented letters or CJK. Blob URLs carry them ` +
      'percent-encoded as UTF-8, and a tool that encodes them twice or decodes them with another code page mangles ' +
      'them (é becomes Ã©); check that rows come back with the same names',
  },
  {
    code: 'decomposed_unicode_name',
    test: (name) => NON_ASCII.test(name) && name !== name.normalize('NFC'),
    describe: (count) =>
      `${counted(count, 'file name is', 'file names are')} not in Unicode NFC form: an accent is stored as a separate combining character, as ` +
      'macOS writes names. Tools that normalize names to NFC change them, so their rows no longer match; rename the ' +
      'files to their NFC form',
  },
];

/** Partition line kinds of the collision checks: a file, a folder with one of its files, a non-ASCII name by its NFC form. */
const FILE_RECORD = 'F';
const FOLDER_RECORD = 'D';
const NFC_RECORD = 'N';

/** Runs every check on the manifest and the program arguments. Throws only when the manifest cannot be read or parsed. */
export async function checkInputs(options: InputCheckOptions): Promise<InputCheckReport> {
  const maxExamples = options.maxExamples ?? 5;
  const manifestBytes = (await stat(options.manifestPath)).size;
  const partitions = options.partitions ?? choosePartitionCount(manifestBytes);
  if (!Number.isSafeInteger(partitions) || partitions < 1 || partitions > MAX_PARTITIONS) {
    throw new Error(`partitions ${partitions} is invalid; pass an integer from 1 to ${MAX_PARTITIONS}, or leave it unset`);
  }

  const folder = await mkdtemp(path.join(options.temporaryFolder ?? os.tmpdir(), 'amlbatch-input-checks-'));
  try {
    const collector = new IssueCollector(maxExamples);
    const scan = await scanManifest(options, partitions, folder, collector);
    await findCollisions(partitions, folder, collector, options.signal);

    if (scan.itemCount === 0) {
      const where = options.inputFolder === undefined ? 'the input folder' : `input folder ${options.inputFolder}`;
      collector.add('empty_input', 'error', undefined, `${where} has no files, so nothing is submitted; check inputFolder`);
    }
    for (const issue of checkProgramArguments(options.programArguments ?? [], maxExamples)) collector.push(issue);

    const issues = collector.issues(scan);
    return {
      itemCount: scan.itemCount,
      totalBytes: scan.totalBytes,
      errors: issues.filter((issue) => issue.severity === 'error'),
      warnings: issues.filter((issue) => issue.severity === 'warning'),
    };
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}

/**
 * Checks program arguments against the flags the Azure ML parallel runtime reads (see runtime-arguments.ts).
 * An element may contain several space-separated arguments, as Azure ML's `program_arguments` string does.
 */
export function checkProgramArguments(programArguments: readonly string[], maxExamples = 5): InputIssue[] {
  const reserved: string[] = [];
  const reservedAdvice = new Set<string>();
  const tuning: string[] = [];
  const abbreviations: string[] = [];

  for (const token of programArguments.flatMap((argument) => argument.split(/\s+/))) {
    if (!token.startsWith('--')) continue;
    const name = token.includes('=') ? token.slice(0, token.indexOf('=')) : token;
    const flag = runtimeFlagNamed(name);
    if (flag?.use === 'amlbatch_setting') {
      reserved.push(name);
      reservedAdvice.add(`set ${flag.inputField} in the workflow input instead of ${name}`);
    } else if (flag?.use === 'set_by_runtime') {
      reserved.push(name);
      reservedAdvice.add(`rename ${name}, which the runtime sets itself`);
    } else if (flag?.use === 'tuning') {
      tuning.push(name);
    } else {
      const abbreviated = runtimeFlagAbbreviating(name);
      if (abbreviated !== undefined) abbreviations.push(`${name} (the runtime passes ${abbreviated.flag})`);
    }
  }

  const issues: InputIssue[] = [];
  if (reserved.length > 0) {
    issues.push({
      code: 'reserved_runtime_argument',
      severity: 'error',
      count: reserved.length,
      examples: reserved.slice(0, maxExamples),
      message:
        `program arguments ${reserved.join(', ')} are flags that the Azure ML parallel runtime reads from the same ` +
        `argument list, so the runtime and the entry script would both take them; ${[...reservedAdvice].join('; ')}`,
    });
  }
  if (tuning.length > 0) {
    issues.push({
      code: 'runtime_tuning_argument',
      severity: 'warning',
      count: tuning.length,
      examples: tuning.slice(0, maxExamples),
      message:
        `program arguments ${tuning.join(', ')} tune the Azure ML parallel runtime: Azure ML applies them, the local ` +
        'runner ignores them, and the entry script receives them too; keep them only for Azure batches',
    });
  }
  if (abbreviations.length > 0) {
    issues.push({
      code: 'argument_abbreviates_runtime_flag',
      severity: 'warning',
      count: abbreviations.length,
      examples: abbreviations.slice(0, maxExamples),
      message:
        `program arguments ${abbreviations.join(', ')} start with a flag that the Azure ML runtime passes. An entry ` +
        "script parsing with argparse's default allow_abbrev=True reads the runtime's flag as an abbreviation of its " +
        'own argument; create the parser with allow_abbrev=False',
    });
  }
  return issues;
}

interface ManifestScan {
  itemCount: number;
  totalBytes: number;
  /** Bytes one run() call can read in time, from runInvocationTimeout and the measured rate, when both are given. */
  budget?: { timeoutSeconds: number; bytesPerSecond: number; bytes: number };
  /** Files that alone exceed what one run() call can read in time, and the largest of them. */
  oversizedFiles: number;
  largestFile?: { path: string; size: number };
  oversizedMiniBatches: number;
  largestMiniBatch?: { index: number; bytes: number };
}

/**
 * Streams the manifest once: counts, name rules, size checks, and the partition files for the collision checks.
 * Folder records are written once per run of paths that share the folder, so a sorted manifest writes each
 * folder about once.
 */
async function scanManifest(options: InputCheckOptions, partitions: number, folder: string, collector: IssueCollector): Promise<ManifestScan> {
  const scan: ManifestScan = { itemCount: 0, totalBytes: 0, oversizedFiles: 0, oversizedMiniBatches: 0, budget: readBudget(options) };
  const budgetBytes = scan.budget?.bytes;
  const miniBatchSize = options.miniBatchSize ?? 1;
  let miniBatchBytes = 0;
  // A mini-batch with a file that alone exceeds the budget is covered by the file warning, which gives the better fix.
  let miniBatchHasOversizedFile = false;
  let previousFolders: string[] = [];

  const writer = new PartitionedWriter(folder, 'names', partitions);
  try {
    for await (const batch of readLineBatches(options.manifestPath)) {
      options.signal?.throwIfAborted();
      for (let offset = 0; offset < batch.lines.length; offset += 1) {
        const line = batch.lines[offset];
        if (line.trim() === '') continue;
        const { path: name, size } = readManifestEntry(line, batch.firstLineNumber + offset, options.manifestPath);
        scan.itemCount += 1;
        scan.totalBytes += size;

        for (const rule of NAME_RULES) if (rule.test(name)) collector.add(rule.code, 'warning', name);

        const encoded = JSON.stringify(name);
        writer.write(partitionOf(name, partitions), `${FILE_RECORD}\t${encoded}`);
        const folders = parentFolders(name);
        for (let depth = 0; depth < folders.length; depth += 1) {
          if (previousFolders[depth] === folders[depth]) continue;
          writer.write(partitionOf(folders[depth], partitions), `${FOLDER_RECORD}\t${JSON.stringify(folders[depth])}\t${encoded}`);
        }
        previousFolders = folders;
        if (NON_ASCII.test(name)) {
          const normalized = name.normalize('NFC');
          writer.write(partitionOf(normalized, partitions), `${NFC_RECORD}\t${JSON.stringify(normalized)}\t${encoded}`);
        }

        if (budgetBytes === undefined) continue;
        if (size > budgetBytes) {
          scan.oversizedFiles += 1;
          if (scan.largestFile === undefined || size > scan.largestFile.size) scan.largestFile = { path: name, size };
          collector.add('file_exceeds_timeout', 'warning', name);
        }
        miniBatchBytes += size;
        miniBatchHasOversizedFile ||= size > budgetBytes;
        if (scan.itemCount % miniBatchSize === 0) {
          if (!miniBatchHasOversizedFile) recordMiniBatch(scan, scan.itemCount / miniBatchSize - 1, miniBatchBytes, budgetBytes, collector);
          miniBatchBytes = 0;
          miniBatchHasOversizedFile = false;
        }
      }
    }
    if (budgetBytes !== undefined && scan.itemCount % miniBatchSize !== 0 && !miniBatchHasOversizedFile) {
      recordMiniBatch(scan, Math.floor(scan.itemCount / miniBatchSize), miniBatchBytes, budgetBytes, collector);
    }
  } finally {
    writer.close();
  }
  return scan;
}

/** Returns the bytes one run() call can read within runInvocationTimeout at the measured rate, or undefined without both. */
function readBudget(options: InputCheckOptions): ManifestScan['budget'] {
  const { runInvocationTimeout, measuredBytesPerSecond, miniBatchSize } = options;
  if (runInvocationTimeout === undefined || measuredBytesPerSecond === undefined) return undefined;
  if (!(runInvocationTimeout > 0) || !(measuredBytesPerSecond > 0)) {
    throw new Error(
      `runInvocationTimeout ${runInvocationTimeout} and measuredBytesPerSecond ${measuredBytesPerSecond} must both be positive numbers`,
    );
  }
  if (miniBatchSize !== undefined && !(Number.isSafeInteger(miniBatchSize) && miniBatchSize >= 1)) {
    throw new Error(`miniBatchSize ${miniBatchSize} is invalid; pass a positive integer`);
  }
  return { timeoutSeconds: runInvocationTimeout, bytesPerSecond: measuredBytesPerSecond, bytes: runInvocationTimeout * measuredBytesPerSecond };
}

function recordMiniBatch(scan: ManifestScan, index: number, bytes: number, budgetBytes: number, collector: IssueCollector): void {
  if (bytes <= budgetBytes) return;
  scan.oversizedMiniBatches += 1;
  if (scan.largestMiniBatch === undefined || bytes > scan.largestMiniBatch.bytes) scan.largestMiniBatch = { index, bytes };
  collector.add('mini_batch_exceeds_timeout', 'warning', `mini-batch ${index}`);
}

/** Returns the folders that contain `name`, outermost first: `a/b/c` gives `a` and `a/b`. */
function parentFolders(name: string): string[] {
  const folders: string[] = [];
  for (let slash = name.indexOf('/'); slash !== -1; slash = name.indexOf('/', slash + 1)) folders.push(name.slice(0, slash));
  return folders;
}

/** Joins each partition's records in memory to find duplicates, file/folder collisions and NFC/NFD collisions. */
async function findCollisions(partitions: number, folder: string, collector: IssueCollector, signal: AbortSignal | undefined): Promise<void> {
  for (let partition = 0; partition < partitions; partition += 1) {
    signal?.throwIfAborted();
    const files = new Set<string>();
    const folders = new Map<string, string>();
    const byNormalForm = new Map<string, Set<string>>();

    for await (const batch of readLineBatches(partitionFile(folder, 'names', partition))) {
      for (const line of batch.lines) {
        if (line === '') continue;
        const fields = line.split('\t');
        if (fields[0] === FILE_RECORD) {
          if (files.has(fields[1])) collector.add('duplicate_path', 'error', JSON.parse(fields[1]) as string);
          files.add(fields[1]);
        } else if (fields[0] === FOLDER_RECORD) {
          if (!folders.has(fields[1])) folders.set(fields[1], fields[2]);
        } else {
          const names = byNormalForm.get(fields[1]) ?? new Set<string>();
          names.add(fields[2]);
          byNormalForm.set(fields[1], names);
        }
      }
    }

    for (const [folderName, child] of folders) {
      if (!files.has(folderName)) continue;
      const example = `${JSON.parse(folderName) as string} is a file and also the folder of ${JSON.parse(child) as string}`;
      collector.add('file_folder_collision', 'error', example);
    }
    for (const [normalForm, names] of byNormalForm) {
      // An ASCII or NFC name is its own normal form, and its file record is in this partition too.
      if (files.has(normalForm)) names.add(normalForm);
      if (names.size < 2) continue;
      const spelled = [...names].map((name) => describeCodePoints(JSON.parse(name) as string));
      // A warning, not an error: Linux file systems and blob storage keep both names apart, so the batch scores both.
      collector.add('unicode_normalization_collision', 'warning', spelled.join(' and '));
    }
  }
}

/** Returns a name with its non-ASCII code points, which distinguish names that look the same. */
function describeCodePoints(name: string): string {
  const codePoints = Array.from(name)
    .filter((char) => (char.codePointAt(0) ?? 0) > 0x7f)
    .map((char) => `U+${(char.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`);
  return `${JSON.stringify(name)} (${codePoints.join(' ')})`;
}

/** Counts issues by code and keeps their first examples; messages that need totals are written at the end. */
class IssueCollector {
  private readonly byCode = new Map<InputIssueCode, InputIssue>();
  private readonly extra: InputIssue[] = [];

  constructor(private readonly maxExamples: number) {}

  /** Counts one occurrence of `code`. Without `message`, the message is written from the totals at the end. */
  add(code: InputIssueCode, severity: InputIssue['severity'], example?: string, message = ''): void {
    let issue = this.byCode.get(code);
    if (issue === undefined) {
      issue = { code, severity, message, count: 0, examples: [] };
      this.byCode.set(code, issue);
    }
    issue.count += 1;
    if (example !== undefined && issue.examples.length < this.maxExamples) issue.examples.push(example);
  }

  push(issue: InputIssue): void {
    this.extra.push(issue);
  }

  /** Returns the issues, errors first, with messages that state their totals. */
  issues(scan: ManifestScan): InputIssue[] {
    for (const issue of this.byCode.values()) {
      if (issue.message === '') issue.message = this.messageFor(issue, scan);
    }
    const all = [...this.byCode.values(), ...this.extra];
    return [...all.filter((issue) => issue.severity === 'error'), ...all.filter((issue) => issue.severity === 'warning')];
  }

  private messageFor(issue: InputIssue, scan: ManifestScan): string {
    const rule = NAME_RULES.find((candidate) => candidate.code === issue.code);
    if (rule !== undefined) return rule.describe(issue.count);
    switch (issue.code) {
      case 'duplicate_path':
        return `the manifest lists ${counted(issue.count, 'path', 'paths')} more than once; build the manifest again from the input folder`;
      case 'file_folder_collision':
        return (
          `${counted(issue.count, 'name is', 'names are')} both a file and a folder, which blob storage allows but a file system does not, ` +
          'so a mounted or downloaded input cannot hold both; rename the file or the folder'
        );
      case 'unicode_normalization_collision':
        return (
          `${counted(issue.count, 'group of file names differs', 'groups of file names differ')} only in Unicode normalization (NFC and NFD forms of the same ` +
          'text). Linux file systems and blob storage keep them apart, so the batch scores each, but the names collide ' +
          'on macOS file systems and in tools that normalize names, where one file replaces the other and their rows ' +
          'cannot be told apart; rename one name of each group'
        );
      case 'file_exceeds_timeout':
        return describeOversizedFiles(issue.count, scan);
      case 'mini_batch_exceeds_timeout':
        return describeOversizedMiniBatches(issue.count, scan);
      default:
        return `${issue.count} items: ${issue.code}`;
    }
  }
}

function describeBudget(scan: ManifestScan): string {
  const budget = scan.budget;
  if (budget === undefined) return 'what one run() call can read in time';
  return (
    `the ${formatBytes(budget.bytes)} that one run() call can read in runInvocationTimeout ${budget.timeoutSeconds} s ` +
    `at the measured rate of ${formatBytes(budget.bytesPerSecond, '/s')}`
  );
}

/** Seconds, rounded up, that reading `bytes` takes at the measured rate. */
function secondsToRead(bytes: number, scan: ManifestScan): number {
  return Math.ceil(bytes / (scan.budget?.bytesPerSecond ?? Number.POSITIVE_INFINITY));
}

function describeOversizedFiles(count: number, scan: ManifestScan): string {
  const largest = scan.largestFile;
  const needed = largest === undefined ? '' : `; the largest, ${largest.path}, has ${formatBytes(largest.size)} and needs about ${secondsToRead(largest.size, scan)} s`;
  return (
    `${counted(count, 'file is', 'files are each')} larger than ${describeBudget(scan)}${needed}. At that rate their mini-batches time out on every ` +
    `attempt; raise runInvocationTimeout${largest === undefined ? '' : ` above ${secondsToRead(largest.size, scan)} s`} or split the files`
  );
}

function describeOversizedMiniBatches(count: number, scan: ManifestScan): string {
  const largest = scan.largestMiniBatch;
  const needed =
    largest === undefined ? '' : `; the largest, mini-batch ${largest.index}, has ${formatBytes(largest.bytes)} and needs about ${secondsToRead(largest.bytes, scan)} s`;
  return (
    `${counted(count, 'mini-batch of consecutive manifest items holds', 'mini-batches of consecutive manifest items each hold')} more than ${describeBudget(scan)}${needed}. Lower ` +
    'miniBatchSize or raise runInvocationTimeout. Azure ML forms mini-batches in its own order, so there the count can differ'
  );
}

function formatBytes(bytes: number, per = ''): string {
  if (bytes < 1024) return `${bytes} bytes${per}`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}${per} (${bytes} bytes${per})`;
}

/** Returns `count` with the singular or plural phrase, such as "1 file name contains" or "2 file names contain". */
function counted(count: number, singular: string, plural: string): string {
  return `${count} ${count === 1 ? singular : plural}`;
}
