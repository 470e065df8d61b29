/**
 * A distinct_count's values in memory: finite numbers in an open-addressing table of doubles (a JS Set
 * boxes each number it holds, and grows by rehashing objects: several times slower per row), any other
 * value as its JSON text in a Set. The two never meet (a JSON text is not a number) and a finite
 * number's JSON text is its own, so the count is the one JSON texts alone would give. (Infinity's and
 * -Infinity's JSON text is "null": they stay texts, and count as one.)
 */
import type { RunValue } from './runFiles.js';

const bits = new Float64Array(1);
const words = new Int32Array(bits.buffer);

export class DistinctSet {
  private table = new Float64Array(8).fill(NaN);
  private nums = 0;
  private readonly texts = new Set<string>();

  get size(): number {
    return this.nums + this.texts.size;
  }

  /** Adds a value (not null or undefined); true if it was new. */
  add(v: unknown): boolean {
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      const before = this.texts.size;
      this.texts.add(JSON.stringify(v));
      return this.texts.size > before;
    }
    // -0 is 0 here, as its JSON text is.
    const x = v === 0 ? 0 : v;
    if ((this.nums + 1) * 2 > this.table.length) this.grow();
    return this.put(this.table, x);
  }

  private put(table: Float64Array, x: number): boolean {
    const mask = table.length - 1;
    for (let slot = hash(x) & mask; ; slot = (slot + 1) & mask) {
      const y = table[slot]!;
      if (y === x) return false;
      if (y !== y) {
        table[slot] = x;
        this.nums += 1;
        return true;
      }
    }
  }

  private grow(): void {
    const old = this.table;
    this.table = new Float64Array(old.length * 2).fill(NaN);
    this.nums = 0;
    for (const x of old) if (x === x) this.put(this.table, x);
  }

  /** The values in a run's order: numbers ascending, then JSON texts ascending. */
  sorted(): RunValue[] {
    const nums = new Float64Array(this.nums);
    let i = 0;
    for (const x of this.table) if (x === x) nums[i++] = x;
    nums.sort();
    const out: RunValue[] = Array.from(nums);
    for (const t of [...this.texts].sort()) out.push(t);
    return out;
  }
}

function hash(x: number): number {
  if ((x | 0) === x) return Math.imul(x, 0x9e3779b1) >>> 7;
  bits[0] = x;
  return Math.imul(words[0]! ^ Math.imul(words[1]!, 0x85ebca6b), 0x9e3779b1) >>> 7;
}
