/**
 * The rows of a CSV, TSV, JSON-array or NDJSON file, streamed: each is a record with its line (or, in a
 * JSON array, its position), or a row that could not be read, with why and its raw text. Memory holds
 * one read chunk and the rows parsed from it, whatever the file's size.
 */
import { createReadStream, type ReadStream } from 'node:fs';
import { once } from 'node:events';
import { Parser, type CsvError, type Options } from 'csv-parse';
import { JSONParser } from '@streamparser/json';
import type { DataRecord } from '../records.js';
import { DataInputError } from '../../lib/errors.js';

export type FileFormat = 'csv' | 'tsv' | 'json' | 'ndjson';

export interface Row {
  /** 1-based line of the file (CSV, TSV, NDJSON: the row's last line) or position in the JSON array. */
  line: number;
  record?: DataRecord;
  /** Why the row could not be read (no record then). */
  error?: string;
  raw?: string;
}

export interface RowSourceOptions {
  format: FileFormat;
  delimiter?: string | undefined;
  /** The quote character; null: none (TSV's default). */
  quote?: string | null | undefined;
  header: boolean;
  columns?: readonly string[] | undefined;
  /** JSON: where the array of records is (dot path; empty: the top level). */
  recordsPath?: string | undefined;
  /** Keep each row's raw text (for the quarantine file). */
  keepRaw: boolean;
  signal: AbortSignal;
  onBytes(read: number): void;
}

// The parsers turn a whole read chunk into records at once, so the chunk bounds the records in flight:
// 64 KB keeps a file_ingestion under a 16 MB heap (1 MB chunks needed more), at the same speed.
const CHUNK = 1 << 16;

function open(path: string, o: RowSourceOptions): ReadStream {
  const input = createReadStream(path, { highWaterMark: CHUNK, signal: o.signal });
  let read = 0;
  input.on('data', (c) => {
    read += c.length;
    o.onBytes(read);
  });
  return input;
}

/**
 * The rows of a file in batches, one batch per read chunk (about 64 KB of input): a reader goes through a
 * batch synchronously, one await per chunk rather than two per row.
 */
export function readRowBatches(path: string, o: RowSourceOptions): AsyncGenerator<Row[]> {
  switch (o.format) {
    case 'csv':
    case 'tsv':
      return csvRows(path, o);
    case 'ndjson':
      return ndjsonRows(path, o);
    case 'json':
      return jsonRows(path, o);
  }
}

/**
 * csv-parse's stream parser, its output taken as it is pushed: each record with the line the parser is
 * at (what `info: true` would report, without the per-record info object that option builds), into a
 * batch the reader takes after each write. Skipped rows join the same batch when the parser meets them,
 * so rows stay in file order.
 */
class BatchParser extends Parser {
  readonly rows: Row[] = [];

  constructor(
    options: Options,
    private readonly byName: boolean,
    private readonly withRaw: boolean,
  ) {
    super(options);
  }

  override push(item: unknown): boolean {
    if (item === null) return super.push(null);
    const line = this.info.lines;
    if (this.withRaw) {
      const { record, raw } = item as { record: DataRecord | string[]; raw: string };
      this.rows.push({
        line,
        record: this.byName ? (record as DataRecord) : byPosition(record as string[]),
        raw: raw.replace(/\r?\n$/, ''),
      });
    } else {
      this.rows.push({
        line,
        record: this.byName ? (item as DataRecord) : byPosition(item as string[]),
      });
    }
    return true;
  }
}

async function* csvRows(path: string, o: RowSourceOptions): AsyncGenerator<Row[]> {
  const named = o.columns ? [...o.columns] : undefined;
  const columns = named ?? o.header;
  const parser: BatchParser = new BatchParser(
    {
      delimiter: o.delimiter ?? (o.format === 'tsv' ? '\t' : ','),
      quote: o.quote === undefined ? (o.format === 'tsv' ? null : '"') : o.quote,
      bom: true,
      columns,
      // With the names given, a header line is read past rather than taken as names.
      ...(named && o.header ? { from_line: 2 } : {}),
      skip_empty_lines: true,
      raw: o.keepRaw,
      skip_records_with_error: true,
      on_skip: (err: CsvError | undefined, raw: string | undefined) => {
        // Called while parsing, so after the parser exists.
        parser.rows.push({
          line: Number(err?.lines ?? 0),
          error: err ? csvReason(err) : 'unreadable row',
          ...(raw !== undefined ? { raw: raw.replace(/\r?\n$/, '') } : {}),
        });
        return undefined;
      },
    },
    columns !== false,
    o.keepRaw,
  );
  const take = (): Row[] => parser.rows.splice(0);
  // A parse error is the stream's error: seen at once through `errored`, never written past.
  parser.on('error', () => {});
  const check = (): void => {
    if (parser.errored) throw parser.errored;
  };
  for await (const chunk of open(path, o) as AsyncIterable<Buffer>) {
    check();
    // The parser parses a written chunk at once; a write it had to buffer is waited for here.
    if (!parser.write(chunk)) await once(parser, 'drain');
    check();
    yield take();
  }
  parser.end();
  await once(parser, 'finish');
  check();
  yield take();
}

/** csv-parse's message without its "Invalid Record Length:" style prefix noise kept short. */
function csvReason(err: CsvError): string {
  return `${err.code}: ${err.message}`;
}

/** A row of a file without names: fields col1, col2, ... */
function byPosition(fields: string[]): DataRecord {
  const out: DataRecord = {};
  fields.forEach((v, i) => (out[`col${i + 1}`] = v));
  return out;
}

async function* ndjsonRows(path: string, o: RowSourceOptions): AsyncGenerator<Row[]> {
  let carry = '';
  let line = 0;
  const one = (text: string): Row | null => {
    line += 1;
    if (text.trim() === '') return null;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      return { line, error: `not JSON (${(err as Error).message})`, raw: text };
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      return { line, error: 'not a JSON object (each line must be one record: {...})', raw: text };
    }
    return { line, record: value as DataRecord, ...(o.keepRaw ? { raw: text } : {}) };
  };
  const input = open(path, o);
  input.setEncoding('utf8');
  let first = true;
  for await (const chunk of input as AsyncIterable<string>) {
    let text = carry + chunk;
    if (first) {
      text = text.replace(/^\uFEFF/, '');
      first = false;
    }
    const lines = text.split('\n');
    carry = lines.pop()!;
    const batch: Row[] = [];
    for (const l of lines) {
      const row = one(l.endsWith('\r') ? l.slice(0, -1) : l);
      if (row) batch.push(row);
    }
    yield batch;
  }
  if (carry !== '') {
    const row = one(carry);
    if (row) yield [row];
  }
}

async function* jsonRows(path: string, o: RowSourceOptions): AsyncGenerator<Row[]> {
  const at = (o.recordsPath ?? '').replace(/^\$\.?/, '');
  const parser = new JSONParser({ paths: [at ? `$.${at}.*` : '$.*'], keepStack: false });
  const found: Row[] = [];
  let notArray: string | null = null;
  parser.onValue = ({ value, key }) => {
    if (typeof key !== 'number') {
      notArray ??= `the records at ${at || 'the top level'} are not in a JSON array (found a field "${String(key)}")`;
      return;
    }
    const line = key + 1;
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      found.push({
        line,
        error: 'not a JSON object (each element must be one record: {...})',
        raw: JSON.stringify(value),
      });
    } else {
      found.push({ line, record: value as DataRecord, ...(o.keepRaw ? { raw: JSON.stringify(value) } : {}) });
    }
  };
  const input = open(path, o);
  let any = false;
  for await (const chunk of input as AsyncIterable<Buffer>) {
    any = true;
    try {
      parser.write(chunk);
    } catch (err) {
      throw new DataInputError(`${path}: not valid JSON: ${(err as Error).message}`);
    }
    if (notArray) throw new DataInputError(`${path}: ${notArray}`);
    yield found.splice(0);
  }
  if (!any)
    throw new DataInputError(
      `${path}: the file is empty (a JSON file holds an array of records: [{...}, ...])`,
    );
  if (!parser.isEnded) {
    try {
      parser.end();
    } catch (err) {
      throw new DataInputError(`${path}: the JSON ends early: ${(err as Error).message}`);
    }
  }
  yield found.splice(0);
}
