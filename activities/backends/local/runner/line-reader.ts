import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';

const CHUNK_BYTES = 1 << 20;
const LINE_FEED = 0x0a;
const CARRIAGE_RETURN = 0x0d;

/**
 * Reads a UTF-8 file line by line through a fixed-size read buffer, so memory grows with the longest line and
 * not with the file. A line may end with `\n` or `\r\n`; the ending is not part of the returned text.
 */
export class LineReader {
  private readonly chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  private buffered: Buffer = Buffer.alloc(0);
  /** Index in `buffered` where the next line starts. */
  private position = 0;
  /** File offset of `buffered[0]`. */
  private bufferedOffset = 0;
  private endOfFile = false;
  /** 1-based number of the line that `nextLine` returned last. */
  lineNumber = 0;
  /** File offset just after the last returned line and its line ending. */
  endOffset = 0;
  /** False when the last returned line ran to the end of the file without a line ending. */
  lastLineTerminated = true;

  private constructor(private readonly handle: FileHandle) {}

  static async open(file: string): Promise<LineReader> {
    return new LineReader(await open(file, 'r'));
  }

  /** Returns the next line, or undefined at the end of the file. */
  async nextLine(): Promise<string | undefined> {
    for (;;) {
      const lineFeed = this.buffered.indexOf(LINE_FEED, this.position);
      if (lineFeed !== -1) return this.take(lineFeed, lineFeed + 1, true);
      if (this.endOfFile) {
        if (this.position >= this.buffered.length) return undefined;
        return this.take(this.buffered.length, this.buffered.length, false);
      }
      await this.fill();
    }
  }

  async close(): Promise<void> {
    await this.handle.close();
  }

  private take(end: number, next: number, terminated: boolean): string {
    const textEnd = end > this.position && this.buffered[end - 1] === CARRIAGE_RETURN ? end - 1 : end;
    const line = this.buffered.toString('utf8', this.position, textEnd);
    this.position = next;
    this.lineNumber += 1;
    this.endOffset = this.bufferedOffset + next;
    this.lastLineTerminated = terminated;
    return line;
  }

  private async fill(): Promise<void> {
    const { bytesRead } = await this.handle.read(this.chunk, 0, CHUNK_BYTES, null);
    if (bytesRead === 0) {
      this.endOfFile = true;
      return;
    }
    const rest = this.buffered.subarray(this.position);
    this.bufferedOffset += this.position;
    this.buffered = Buffer.concat([rest, this.chunk.subarray(0, bytesRead)]);
    this.position = 0;
  }
}
