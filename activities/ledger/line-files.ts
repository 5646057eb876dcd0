/**
 * Streaming helpers for JSON Lines files too large for memory: batched line reading, hash-partitioned temporary
 * files, and creating a result file only once it is complete.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { link, open, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { createHash, randomUUID } from 'node:crypto';
import { StringDecoder } from 'node:string_decoder';
import { pathExists, sha256OfFile } from '../backends/common/files';

/** Consecutive lines of a file, without their line endings. */
export interface LineBatch {
  lines: string[];
  /** 1-based line number of `lines[0]`. */
  firstLineNumber: number;
}

const DEFAULT_READ_CHUNK_BYTES = 1 << 20;
const LINE_FEED = 0x0a;

/**
 * Yields a file's lines in batches, one batch per read of `chunkBytes`, so memory contains one chunk and the longest
 * line. Lines end with `\n` or `\r\n`, and a last line without an ending is yielded too. Only `\n` splits lines, so
 * a `\r` inside a line stays part of it.
 */
export async function* readLineBatches(file: string, chunkBytes = DEFAULT_READ_CHUNK_BYTES): AsyncGenerator<LineBatch> {
  const handle = await open(file, 'r');
  const chunk = Buffer.allocUnsafe(chunkBytes);
  const decoder = new StringDecoder('utf8');
  let carry = '';
  let nextLineNumber = 1;
  try {
    for (;;) {
      const { bytesRead } = await handle.read(chunk, 0, chunkBytes, null);
      if (bytesRead === 0) break;

      const parts = (carry + decoder.write(chunk.subarray(0, bytesRead))).split('\n');
      carry = parts.pop() ?? '';
      if (parts.length === 0) continue;
      for (let index = 0; index < parts.length; index += 1) {
        const line = parts[index];
        if (line.endsWith('\r')) parts[index] = line.slice(0, -1);
      }
      yield { lines: parts, firstLineNumber: nextLineNumber };
      nextLineNumber += parts.length;
    }

    const last = carry + decoder.end();
    if (last !== '') yield { lines: [last.endsWith('\r') ? last.slice(0, -1) : last], firstLineNumber: nextLineNumber };
  } finally {
    await handle.close();
  }
}

/** Pulls single lines from `readLineBatches`, for merging several files line by line. */
export class LineCursor {
  private batch: string[] = [];
  private position = 0;

  private constructor(private readonly batches: AsyncGenerator<LineBatch>) {}

  static open(file: string, chunkBytes?: number): LineCursor {
    return new LineCursor(readLineBatches(file, chunkBytes));
  }

  /** Returns the next line without waiting, or undefined when the current batch is used up. */
  takeBuffered(): string | undefined {
    if (this.position >= this.batch.length) return undefined;
    const line = this.batch[this.position];
    this.position += 1;
    return line;
  }

  /** Returns the next line, or undefined at the end of the file. */
  async next(): Promise<string | undefined> {
    for (;;) {
      const line = this.takeBuffered();
      if (line !== undefined) return line;
      const result = await this.batches.next();
      if (result.done === true) return undefined;
      this.batch = result.value.lines;
      this.position = 0;
    }
  }

  async close(): Promise<void> {
    await this.batches.return(undefined);
  }
}

/** Bytes buffered per partition before they are written; a partition's file gets one write per flush. */
const PARTITION_BUFFER_BYTES = 1 << 16;
/** UTF-8 takes at most 3 bytes per UTF-16 code unit (a surrogate pair, 2 units, takes 4). */
const MAX_UTF8_BYTES_PER_UNIT = 3;

/**
 * Appends lines to `count` temporary files, `<folder>/<name>-<n>`, buffering each file's lines so that a write
 * carries many of them. Lines are encoded into a fixed 64 KiB buffer per file at once, so memory is bounded by
 * `count` × 64 KiB and the buffered lines keep no reference to the strings they were cut from.
 */
export class PartitionedWriter {
  private readonly descriptors: number[] = [];
  private readonly buffers: Buffer[] = [];
  private readonly lengths: number[] = [];
  private closed = false;

  constructor(
    private readonly folder: string,
    private readonly name: string,
    readonly count: number,
  ) {
    try {
      for (let partition = 0; partition < count; partition += 1) {
        this.descriptors.push(openSync(this.fileOf(partition), 'wx'));
        this.buffers.push(Buffer.allocUnsafe(PARTITION_BUFFER_BYTES));
        this.lengths.push(0);
      }
    } catch (error) {
      for (const descriptor of this.descriptors) closeSync(descriptor);
      throw error;
    }
  }

  fileOf(partition: number): string {
    return partitionFile(this.folder, this.name, partition);
  }

  /** Appends `line` and a line feed to partition `partition`. */
  write(partition: number, line: string): void {
    const maxBytes = line.length * MAX_UTF8_BYTES_PER_UNIT + 1;
    if (this.lengths[partition] + maxBytes > PARTITION_BUFFER_BYTES) this.flush(partition);
    if (maxBytes > PARTITION_BUFFER_BYTES) {
      writeSync(this.descriptors[partition], `${line}\n`);
      return;
    }
    const buffer = this.buffers[partition];
    let length = this.lengths[partition];
    length += buffer.write(line, length, 'utf8');
    buffer[length] = LINE_FEED;
    this.lengths[partition] = length + 1;
  }

  /** Writes what is buffered and closes every file. Calling it again does nothing. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    // Every file is closed even when a write fails; the first write error is thrown afterwards.
    let firstError: Error | undefined;
    for (let partition = 0; partition < this.count; partition += 1) {
      try {
        this.flush(partition);
      } catch (error) {
        firstError ??= error as Error;
      }
      closeSync(this.descriptors[partition]);
    }
    if (firstError !== undefined) throw firstError;
  }

  private flush(partition: number): void {
    const length = this.lengths[partition];
    if (length === 0) return;
    let written = 0;
    while (written < length) written += writeSync(this.descriptors[partition], this.buffers[partition], written, length - written);
    this.lengths[partition] = 0;
  }
}

/** Characters of text collected before `HashingLineWriter` writes them in one call. */
const HASHING_WRITER_CHUNK_CHARS = 1 << 20;

/**
 * Writes lines to a new file in chunks of about 1 MiB of text and hashes what it writes, so a streamed output gets
 * its SHA-256 without being read again. `finish` writes the rest, syncs the file and returns the hash; `close`
 * releases the file and is safe after `finish`.
 */
export class HashingLineWriter {
  private pending: string[] = [];
  private pendingChars = 0;
  private readonly hash = createHash('sha256');

  private constructor(private readonly handle: FileHandle) {}

  /** Creates `file`, which must not exist. */
  static async create(file: string): Promise<HashingLineWriter> {
    return new HashingLineWriter(await open(file, 'wx'));
  }

  /** Appends `line` and a line feed. */
  async writeLine(line: string): Promise<void> {
    this.pending.push(line, '\n');
    this.pendingChars += line.length + 1;
    if (this.pendingChars >= HASHING_WRITER_CHUNK_CHARS) await this.flush();
  }

  async finish(): Promise<string> {
    await this.flush();
    await this.handle.sync();
    return this.hash.digest('hex');
  }

  async close(): Promise<void> {
    await this.handle.close();
  }

  private async flush(): Promise<void> {
    const text = this.pending.join('');
    this.pending = [];
    this.pendingChars = 0;
    this.hash.update(text);
    await this.handle.write(text);
  }
}

export function partitionFile(folder: string, name: string, partition: number): string {
  return path.join(folder, `${name}-${partition}`);
}

/** Returns the partition, in [0, count), of `key`: a 32-bit FNV-1a hash of its UTF-16 code units. */
export function partitionOf(key: string, count: number): number {
  let hash = 0x811c9dc5;
  for (let index = 0; index < key.length; index += 1) {
    hash ^= key.charCodeAt(index);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % count;
}

/**
 * Input bytes per partition that the partition count aims at. One partition's items are joined in memory at a
 * time. With 1,000,000 items, 8 MiB partitions peaked at 263 MiB resident and 2 MiB partitions at about 175 MiB,
 * because V8 collects the garbage of a larger join later (bench/ledger-bench.ts on a 2-vCPU VM, Node 20.20).
 */
const TARGET_PARTITION_BYTES = 2 << 20;
/** The partition index of each item is stored as one byte, so there are at most 256 partitions. */
export const MAX_PARTITIONS = 256;

/**
 * Chooses how many partitions split `inputBytes` of JSON Lines so that each contains about 2 MiB.
 * NOTE: above 512 MiB of input (about 7,000,000 items) the 256-partition cap makes partitions, and so memory,
 * grow with the input.
 */
export function choosePartitionCount(inputBytes: number): number {
  return Math.min(MAX_PARTITIONS, Math.max(1, Math.ceil(inputBytes / TARGET_PARTITION_BYTES)));
}

/** Fails early, before any work, when `file` exists: results are never overwritten. */
export async function requireAbsent(file: string, description: string): Promise<void> {
  if (!(await pathExists(file))) return;
  throw new Error(`${description} ${file} already exists; delete it or choose another path`);
}

/** Returns a temporary name next to `finalPath` for a file that `publishFile` later moves into place. */
export function temporaryNameFor(finalPath: string): string {
  return path.join(path.dirname(finalPath), `.${path.basename(finalPath)}.${randomUUID()}.tmp`);
}

/**
 * Makes the complete `temporary` file appear as `finalPath`, failing when `finalPath` exists. A hard link, unlike a
 * rename, cannot replace an existing file, so a result written by someone else in the meantime is kept.
 */
export async function publishFile(temporary: string, finalPath: string): Promise<void> {
  try {
    await link(temporary, finalPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new Error(`${finalPath} already exists; delete it or choose another path`, { cause: error });
    }
    throw error;
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
}

/**
 * Makes the complete `temporary` file appear as `finalPath`, like `publishFile`, but when `finalPath` already exists
 * with the SHA-256 `sha256` (a retried call that wrote it before), keeps it and succeeds. An existing file with other
 * content is never replaced: the call fails and names it.
 */
export async function publishOrReuseFile(temporary: string, finalPath: string, sha256: string, description: string): Promise<void> {
  try {
    await link(temporary, finalPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    if ((await sha256OfFile(finalPath)) !== sha256) {
      throw new Error(`${description} ${finalPath} already exists with other content; delete it or choose another path`, { cause: error });
    }
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
}
