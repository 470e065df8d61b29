/**
 * Records flow between tabular jobs as NDJSON files in a data directory: one JSON object per line,
 * UTF-8, `\n`-terminated. NDJSON streams (bounded memory at any size), keeps JSON's types (numbers,
 * booleans, null, nested values) which CSV loses, is appendable (a resumed ingestion continues a
 * file), and every tool reads it (`jq`, pandas, DuckDB, `mongoimport`). Job params and results keep
 * to a summary: counts, paths, statistics.
 */
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { once } from 'node:events';
import { discardTemp, renameIntoPlace, tempSibling } from '../lib/atomic.js';

export type DataRecord = Record<string, unknown>;

/** Buffered text a RecordWriter writes out at once (in UTF-16 units). */
const FLUSH_AT = 1 << 16;

export interface ReadOptions {
  signal?: AbortSignal;
  /** Called with the bytes read so far, for progress by bytes. */
  onBytes?: (bytesRead: number) => void;
  /** Byte offset to start at (a line boundary): used to resume. */
  start?: number;
}

export interface RecordAt {
  record: DataRecord;
  /** 1-based line number in the file (counting from `start`). */
  line: number;
  /** Byte offset just after this record's line: a resume point. */
  end: number;
}

/** A line of an NDJSON file that is not a JSON object. */
export class RecordLineError extends Error {
  constructor(
    readonly path: string,
    readonly line: number,
    detail: string,
  ) {
    super(`${path}, line ${line}: ${detail}`);
    this.name = 'RecordLineError';
  }
}

/** A run of whole lines of an NDJSON file (the file's last line may lack its '\n'). */
export interface LineChunk {
  buf: Buffer;
  /** Byte offset of `buf[0]` in the file. */
  offset: number;
}

/**
 * Streams an NDJSON file as chunks cut at line ends, for readers that go through a chunk's lines
 * synchronously (one await per chunk, not per line).
 */
export async function* readLineChunks(path: string, opts: ReadOptions = {}): AsyncGenerator<LineChunk> {
  const start = opts.start ?? 0;
  // No position from the start: a pipe (a FIFO another process writes) cannot seek.
  const stream = createReadStream(path, {
    ...(start > 0 ? { start } : {}),
    highWaterMark: 1 << 20,
    signal: opts.signal,
  });
  let carry: Buffer | null = null;
  let offset = start;
  let read = start;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    read += chunk.length;
    const buf: Buffer = carry ? Buffer.concat([carry, chunk]) : chunk;
    const last = buf.lastIndexOf(10);
    if (last === -1) carry = buf;
    else {
      carry = last + 1 < buf.length ? buf.subarray(last + 1) : null;
      yield { buf: buf.subarray(0, last + 1), offset };
      offset += last + 1;
    }
    opts.onBytes?.(read);
  }
  if (carry && carry.length > 0) yield { buf: carry, offset };
}

/** Streams the records of an NDJSON file; blank lines are skipped, any other non-object line throws. */
export async function* readRecords(path: string, opts: ReadOptions = {}): AsyncGenerator<RecordAt> {
  let line = 0;
  for await (const { buf, offset } of readLineChunks(path, opts)) {
    let from = 0;
    while (from < buf.length) {
      const nl = buf.indexOf(10, from);
      const stop = nl === -1 ? buf.length : nl;
      line += 1;
      const record = parseLine(path, line, buf.toString('utf8', from, stop));
      from = stop + 1;
      if (record) yield { record, line, end: offset + Math.min(from, buf.length) };
    }
  }
}

/** A line's record; null for a blank line; RecordLineError for anything but a JSON object. */
export function parseLine(path: string, line: number, text: string): DataRecord | null {
  if (text.trim() === '') return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new RecordLineError(path, line, `not JSON (${(err as Error).message})`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new RecordLineError(path, line, 'not a JSON object (each line must be one record: {...})');
  }
  return value as DataRecord;
}

/**
 * Writes records to `target` whole or not at all: into a temporary sibling, renamed into place by
 * `commit()`; `abort()` (or a failed write) removes the temporary.
 */
export class RecordWriter {
  readonly tmp: string;
  private readonly out: WriteStream;
  private pending = '';
  count = 0;
  /** Bytes written so far (complete after `commit()`). */
  bytes = 0;

  constructor(readonly target: string) {
    this.tmp = tempSibling(target);
    this.out = createWriteStream(this.tmp, { flags: 'wx' });
  }

  async write(record: DataRecord): Promise<void> {
    this.add(record);
    if (this.pending.length >= FLUSH_AT) await this.flush();
  }

  /**
   * Buffers a record without waiting: for a writer that goes through a batch of records synchronously
   * and then calls `flushFull()` once (one await per batch, not per record).
   */
  add(record: DataRecord): void {
    this.pending += JSON.stringify(record) + '\n';
    this.count += 1;
  }

  /** Writes the buffered records out once they reach the flush size. */
  async flushFull(): Promise<void> {
    if (this.pending.length >= FLUSH_AT) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.pending === '') return;
    const data = Buffer.from(this.pending);
    this.pending = '';
    this.bytes += data.length;
    if (!this.out.write(data)) await once(this.out, 'drain');
  }

  /** Flushes, fsyncs and renames the file into place. */
  async commit(): Promise<void> {
    await this.flush();
    await new Promise<void>((resolve, reject) => {
      this.out.once('error', reject);
      this.out.end(() => resolve());
    });
    const fh = await open(this.tmp, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await renameIntoPlace(this.tmp, this.target);
  }

  async abort(): Promise<void> {
    await discardTemp(this.out, this.tmp);
  }
}

/** Writes every record of `source` to `target` atomically; returns how many were written. */
export async function writeRecords(
  target: string,
  source: AsyncIterable<DataRecord> | Iterable<DataRecord>,
): Promise<number> {
  const w = new RecordWriter(target);
  try {
    for await (const r of source) await w.write(r);
    await w.commit();
  } catch (err) {
    await w.abort();
    throw err;
  }
  return w.count;
}
