/**
 * Sorted runs of data_aggregation's spill: NDJSON files of JSON arrays in ascending (key, tag, value)
 * order. A group's state is a line `[key, 0, n, ...states]`; its distinct values follow in blocks
 * `[key, tag, [v, ...]]` of up to BLOCK values, so a value costs a few bytes and no parse of its own.
 * Values are ordered numbers first (by value), then JSON texts (as strings): any fixed order serves, as
 * long as every run uses it, for equal values to meet in the merge.
 *
 * A RunCursor reads one run a chunk at a time (bounded memory however long the run) and steps through
 * its items synchronously within a chunk, so a k-way merge does not await per value.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { once } from 'node:events';

const CHUNK = 1 << 16;
const BLOCK = 1024;

/** A distinct value in a run: a finite number, or any other value's JSON text. */
export type RunValue = number | string;

/** Orders distinct values: numbers (ascending) before texts (ascending). */
export function compareValues(a: RunValue, b: RunValue): number {
  if (typeof a === 'number') return typeof b === 'number' ? a - b : -1;
  if (typeof b === 'number') return 1;
  return a === b ? 0 : a < b ? -1 : 1;
}

// Keys read from different runs are made the same string, so comparing equal keys (most comparisons
// of a merge) is a pointer check rather than a walk of their text. Bounded: it is only a shortcut.
const interned = new Map<string, string>();
function intern(key: string): string {
  const k = interned.get(key);
  if (k !== undefined) return k;
  if (interned.size >= 1 << 16) interned.clear();
  interned.set(key, key);
  return key;
}

export class RunWriter {
  private readonly out: WriteStream;
  private pending = '';
  private blockKey = '';
  private blockTag = 0;
  private block: RunValue[] = [];
  lines = 0;

  constructor(readonly path: string) {
    this.out = createWriteStream(path, { flags: 'wx' });
  }

  /** A group's state line: n, then its metrics' serialized states. */
  async state(key: string, n: number, states: readonly unknown[]): Promise<void> {
    this.flushBlock();
    await this.line(JSON.stringify([key, 0, n, ...states]));
  }

  /** A distinct value of metric tag - 1 (values of one key and tag come in order). */
  async value(key: string, tag: number, v: RunValue): Promise<void> {
    if (
      this.block.length > 0 &&
      (key !== this.blockKey || tag !== this.blockTag || this.block.length >= BLOCK)
    ) {
      this.flushBlock();
    }
    this.blockKey = key;
    this.blockTag = tag;
    this.block.push(v);
    if (this.pending.length >= CHUNK) await this.drain();
  }

  private flushBlock(): void {
    if (this.block.length === 0) return;
    this.pending += JSON.stringify([this.blockKey, this.blockTag, this.block]) + '\n';
    this.lines += 1;
    this.block = [];
  }

  private async line(text: string): Promise<void> {
    this.pending += text + '\n';
    this.lines += 1;
    if (this.pending.length >= CHUNK) await this.drain();
  }

  private async drain(): Promise<void> {
    const data = this.pending;
    this.pending = '';
    if (!this.out.write(data)) await once(this.out, 'drain');
  }

  async close(): Promise<void> {
    this.flushBlock();
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

type Line = [key: string, tag: number, ...rest: unknown[]];

export class RunCursor {
  private fh: FileHandle | null = null;
  private lines: Line[] = [];
  private i = 0;
  /** Position in the current line's block of values. */
  private j = 0;
  private carry = '';
  private eof = false;
  private readonly buf = Buffer.allocUnsafe(CHUNK);
  private readonly decoder = new TextDecoder('utf-8', { fatal: true });
  /** The current item (valid while `fill()`/`advance()` last returned true). */
  key = '';
  tag = 0;
  /** tag > 0: the current distinct value. */
  value: RunValue = 0;
  /** tag 0: the state line's [n, ...states]. */
  state: unknown[] = [];

  constructor(readonly path: string) {}

  /** Moves to the next item; false when the chunk is used up (then `fill()`). */
  advance(): boolean {
    const line = this.lines[this.i]!;
    if (line[1] !== 0 && ++this.j < (line[2] as RunValue[]).length) {
      this.value = (line[2] as RunValue[])[this.j]!;
      return true;
    }
    this.i += 1;
    return this.load();
  }

  private load(): boolean {
    if (this.i >= this.lines.length) return false;
    const line = this.lines[this.i]!;
    this.key = line[0];
    this.tag = line[1];
    this.j = 0;
    if (line[1] === 0) this.state = line.slice(2);
    else this.value = (line[2] as RunValue[])[0]!;
    return true;
  }

  private push(text: string): void {
    const line = JSON.parse(text) as Line;
    line[0] = intern(line[0]);
    this.lines.push(line);
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
        if (this.carry) this.push(this.carry);
        this.carry = '';
        break;
      }
      // The streaming decoder keeps a multi-byte character split across chunks for the next one.
      const text = this.carry + this.decoder.decode(this.buf.subarray(0, bytesRead), { stream: true });
      const parts = text.split('\n');
      this.carry = parts.pop()!;
      for (const p of parts) if (p) this.push(p);
    }
    return this.load();
  }

  async close(): Promise<void> {
    await this.fh?.close();
    this.fh = null;
  }
}

/** Orders cursors by their current item: key, then tag, then (distinct values) value. */
export function compareCursors(a: RunCursor, b: RunCursor): number {
  if (a.key !== b.key) return a.key < b.key ? -1 : 1;
  if (a.tag !== b.tag) return a.tag - b.tag;
  if (a.tag === 0) return 0;
  return compareValues(a.value, b.value);
}
