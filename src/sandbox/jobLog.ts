/**
 * Where a job's stdout/stderr go: appended to its log file, with only a bounded tail kept in memory.
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

const knownDirs = new Set<string>();

/** Create the log file's folder once per folder per process. */
export function ensureDir(file: string): void {
  const dir = dirname(file);
  if (knownDirs.has(dir)) return;
  mkdirSync(dir, { recursive: true });
  knownDirs.add(dir);
}

/** Bytes → text without a broken UTF-8 sequence at the start (the cut may fall inside a character). */
export function decodeTail(buf: Buffer): string {
  let i = 0;
  while (i < buf.length && i < 4 && (buf[i]! & 0xc0) === 0x80) i++;
  return buf.subarray(i).toString('utf8');
}

/** Last `maxBytes` of a file, not reaching before byte `from` (earlier attempts' output). */
export async function readFileTail(file: string, from: number, maxBytes: number): Promise<string> {
  if (maxBytes <= 0) return '';
  // Most attempts write nothing: one stat then, rather than open, stat and close.
  if ((await stat(file)).size <= from) return '';
  const fh = await open(file, 'r');
  try {
    const { size } = await fh.stat();
    const start = Math.max(from, size - maxBytes);
    const len = size - start;
    if (len <= 0) return '';
    const buf = Buffer.alloc(len);
    const { bytesRead } = await fh.read(buf, 0, len, start);
    return decodeTail(buf.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

/** Keeps the last `max` bytes written to it. */
export class TailRing {
  private chunks: Buffer[] = [];
  private size = 0;
  constructor(private readonly max: number) {}

  push(buf: Buffer): void {
    if (this.max <= 0 || buf.length === 0) return;
    if (buf.length >= this.max) {
      this.chunks = [Buffer.from(buf.subarray(buf.length - this.max))];
      this.size = this.max;
      return;
    }
    // Copy: the caller's buffer may be a slice of a larger pooled read buffer.
    this.chunks.push(Buffer.from(buf));
    this.size += buf.length;
    while (this.size - this.chunks[0]!.length >= this.max) {
      this.size -= this.chunks.shift()!.length;
    }
  }

  text(): string {
    const all = Buffer.concat(this.chunks, this.size);
    return decodeTail(all.subarray(Math.max(0, all.length - this.max)));
  }
}

/**
 * A job's output sink for pooled children: appends to the log file (opened on first output) and
 * keeps the tail. `write` returns false when the file stream wants the producer to pause.
 */
export class JobLog {
  private stream: WriteStream | null = null;
  private failed: Error | null = null;
  private readonly ring: TailRing;

  constructor(
    private readonly file: string,
    tailBytes: number,
    private readonly onError: (err: Error) => void,
  ) {
    this.ring = new TailRing(tailBytes);
  }

  write(buf: Buffer, onDrain: () => void): boolean {
    this.ring.push(buf);
    if (this.failed) return true;
    if (!this.stream) {
      try {
        ensureDir(this.file);
      } catch (err) {
        this.fail(err as Error);
        return true;
      }
      this.stream = createWriteStream(this.file, { flags: 'a' });
      this.stream.on('error', (err) => this.fail(err));
    }
    const ok = this.stream.write(buf);
    if (!ok) this.stream.once('drain', onDrain);
    return ok;
  }

  tail(): string {
    return this.ring.text();
  }

  /** Flush and close the file; never rejects. */
  close(): Promise<void> {
    const s = this.stream;
    if (!s || s.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      s.once('close', () => resolve());
      s.end();
    });
  }

  private fail(err: Error): void {
    if (this.failed) return;
    this.failed = err;
    this.onError(err);
    this.stream?.destroy();
  }
}

/**
 * Splits a pooled child's output stream at end-of-job markers. Output is passed through as it
 * arrives, except a few trailing bytes that might be the start of a marker split across reads.
 */
export class MarkerSplitter {
  private carry: Buffer = Buffer.alloc(0);
  constructor(private readonly marker: Buffer) {}

  push(chunk: Buffer, emit: (buf: Buffer) => void, onMarker: () => void): void {
    let buf = this.carry.length ? Buffer.concat([this.carry, chunk]) : chunk;
    this.carry = Buffer.alloc(0);
    for (;;) {
      const i = buf.indexOf(this.marker);
      if (i < 0) break;
      if (i > 0) emit(buf.subarray(0, i));
      onMarker();
      buf = buf.subarray(i + this.marker.length);
    }
    const keep = this.partialSuffix(buf);
    if (buf.length > keep) emit(buf.subarray(0, buf.length - keep));
    if (keep) this.carry = Buffer.from(buf.subarray(buf.length - keep));
  }

  /** Whatever is held back (the stream ended). */
  flush(emit: (buf: Buffer) => void): void {
    if (this.carry.length) emit(this.carry);
    this.carry = Buffer.alloc(0);
  }

  private partialSuffix(buf: Buffer): number {
    const m = this.marker;
    const first = m[0]!;
    let j = buf.indexOf(first, Math.max(0, buf.length - (m.length - 1)));
    while (j >= 0) {
      const n = buf.length - j;
      if (buf.subarray(j).equals(m.subarray(0, n))) return n;
      j = buf.indexOf(first, j + 1);
    }
    return 0;
  }
}
