/**
 * A streaming CSV reader for RFC 4180 files, such as those `amlbatch results --format csv` writes. Fields are
 * separated by commas and records end with CRLF or LF. A field that contains a comma, quote, CR or LF is enclosed in
 * double quotes, with inner quotes doubled. Line breaks inside quoted fields are kept exactly. As in RFC 4180's grammar, an
 * empty line is a record with one empty field. Only the line break at the very end of the file starts no record.
 */
import { createReadStream } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';

/**
 * Parses CSV text fed in chunks of any size and returns the records completed by each chunk. A chunk may end in
 * the middle of a field or a quote pair. Throws an error naming the line when the text is not valid RFC 4180.
 */
export class CsvParser {
  private field = '';
  private record: string[] = [];
  /** Position of the parser: at a field's start, in an unquoted field, in a quoted field, or after a quote in one. */
  private state: 'field_start' | 'unquoted' | 'quoted' | 'quote_in_quoted' = 'field_start';
  /** A CR was read outside quotes; the record ends here, and an LF that follows belongs to the same line ending. */
  private pendingCarriageReturn = false;
  private line = 1;
  /** True once the current record has any character; the line break that ends the file starts no record. */
  private recordStarted = false;

  constructor(private readonly source = 'CSV input') {}

  push(text: string): string[][] {
    const records: string[][] = [];
    for (let index = 0; index < text.length; index += 1) {
      const char = text[index];

      if (this.pendingCarriageReturn) {
        this.pendingCarriageReturn = false;
        if (char === '\n') continue;
      }

      switch (this.state) {
        case 'quoted':
          if (char === '"') this.state = 'quote_in_quoted';
          else this.field += char;
          if (char === '\n') this.line += 1;
          continue;
        case 'quote_in_quoted':
          if (char === '"') {
            this.field += '"';
            this.state = 'quoted';
            continue;
          }
          if (char !== ',' && char !== '\r' && char !== '\n') {
            throw new Error(`${this.source} line ${this.line}: ${JSON.stringify(char)} follows a closing quote; a quoted field must end at a comma or line end`);
          }
          break;
        case 'field_start':
          if (char === '"') {
            this.state = 'quoted';
            this.recordStarted = true;
            continue;
          }
          break;
        case 'unquoted':
          if (char === '"') {
            throw new Error(`${this.source} line ${this.line}: a quote inside an unquoted field; enclose the field in quotes and double the inner quote`);
          }
          break;
      }

      // Outside quotes: a separator, a line end, or a character of an unquoted field.
      if (char === ',') {
        this.endField();
        this.recordStarted = true;
      } else if (char === '\r' || char === '\n') {
        this.pendingCarriageReturn = char === '\r';
        this.line += 1;
        // RFC 4180 reads an empty line as a record with one empty field, so every line break ends a record.
        records.push(this.endRecord());
      } else {
        this.field += char;
        this.state = 'unquoted';
        this.recordStarted = true;
      }
    }
    return records;
  }

  /** Returns the last record when the text does not end with a line break; throws inside an unclosed quote. */
  end(): string[][] {
    if (this.state === 'quoted') throw new Error(`${this.source} ends inside a quoted field that starts before line ${this.line}; add the closing quote`);
    return this.recordStarted ? [this.endRecord()] : [];
  }

  private endField(): void {
    this.record.push(this.field);
    this.field = '';
    this.state = 'field_start';
  }

  private endRecord(): string[] {
    this.endField();
    const record = this.record;
    this.record = [];
    this.recordStarted = false;
    return record;
  }
}

/** Yields the records of a UTF-8 CSV file, streaming. The header, if any, is the first record. */
export async function* readCsvFile(file: string): AsyncGenerator<string[]> {
  const parser = new CsvParser(`CSV file ${file}`);
  const decoder = new StringDecoder('utf8');
  for await (const chunk of createReadStream(file)) {
    yield* parser.push(decoder.write(chunk as Buffer));
  }
  yield* parser.push(decoder.end());
  yield* parser.end();
}
