/**
 * Sorted runs of data_aggregation's spill: NDJSON files of JSON arrays, each line
 * `[key, tag, ...]` in ascending (key, tag, value) order. A RunCursor reads one run a chunk at a time
 * (bounded memory however long the run) and hands its lines synchronously within a chunk, so a k-way
 * merge does not await per line.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { once } from 'node:events';

export type RunLine = [key: string, tag: number, ...rest: unknown[]];

const CHUNK = 1 << 16;

/** Orders run lines: by key, then tag, then (distinct lines) value text. */
export function compareLines(a: RunLine, b: RunLine): number {
  if (a[0] !== b[0]) return a[0] < b[0] ? -1 : 1;
  if (a[1] !== b[1]) return a[1] - b[1];
  if (a[1] === 0) return 0;
  const va = a[2] as string;
  const vb = b[2] as string;
  return va === vb ? 0 : va < vb ? -1 : 1;
}

export class RunWriter {
  private readonly out: WriteStream;
  private pending = '';
  lines = 0;

  constructor(readonly path: string) {
    this.out = createWriteStream(path, { flags: 'wx' });
  }

  async write(line: RunLine): Promise<void> {
    this.pending += JSON.stringify(line) + '\n';
    this.lines += 1;
    if (this.pending.length >= CHUNK) {
      const data = this.pending;
      this.pending = '';
      if (!this.out.write(data)) await once(this.out, 'drain');
    }
  }

  async close(): Promise<void> {
    if (this.pending) this.out.write(this.pending);
    this.pending = '';
    await new Promise<void>((resolve, reject) => {
      this.out.once('error', reject);
      this.out.end(() => resolve());
    });
  }

  destroy(): void {
    this.out.destroy();
  }
}

export class RunCursor {
  private fh: FileHandle | null = null;
  private lines: RunLine[] = [];
  private i = 0;
  private carry = '';
  private eof = false;
  private readonly buf = Buffer.allocUnsafe(CHUNK);
  private readonly decoder = new TextDecoder('utf-8', { fatal: true });

  constructor(readonly path: string) {}

  /** The current line, or null at the end; call `fill()` first and after `advance()` returns false. */
  get head(): RunLine | null {
    return this.i < this.lines.length ? this.lines[this.i]! : null;
  }

  /** Moves to the next line; false when the chunk is used up (then `fill()`). */
  advance(): boolean {
    this.i += 1;
    return this.i < this.lines.length;
  }

  /** Reads the next chunk's lines, if any; returns false at the end of the run. */
  async fill(): Promise<boolean> {
    this.fh ??= await open(this.path, 'r');
    this.lines = [];
    this.i = 0;
    while (this.lines.length === 0 && !this.eof) {
      const { bytesRead } = await this.fh.read(this.buf, 0, CHUNK, null);
      if (bytesRead === 0) {
        this.eof = true;
        this.carry += this.decoder.decode();
        if (this.carry) this.lines.push(JSON.parse(this.carry) as RunLine);
        this.carry = '';
        break;
      }
      // The streaming decoder keeps a multi-byte character split across chunks for the next one.
      const text = this.carry + this.decoder.decode(this.buf.subarray(0, bytesRead), { stream: true });
      const parts = text.split('\n');
      this.carry = parts.pop()!;
      for (const p of parts) if (p) this.lines.push(JSON.parse(p) as RunLine);
    }
    return this.lines.length > 0;
  }

  async close(): Promise<void> {
    await this.fh?.close();
    this.fh = null;
  }
}
