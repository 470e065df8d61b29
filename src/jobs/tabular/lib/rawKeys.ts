/**
 * A hash table keyed by bytes: it finds a row's group from the raw text of its group fields, so a row of
 * a group already seen costs a hash and a compare, with no key string made. Bounded: past `maxEntries`
 * it empties (it is a cache in front of the groups' Map, which stays the truth).
 */
export class RawKeys<V> {
  private cap = 0;
  private hashes = new Int32Array(0);
  private offs = new Int32Array(0);
  private lens = new Int32Array(0);
  private vals: (V | undefined)[] = [];
  private arena = Buffer.alloc(1 << 16);
  private used = 0;
  size = 0;

  constructor(private readonly maxEntries = 1 << 16) {
    this.clear();
  }

  clear(): void {
    this.cap = 1024;
    this.hashes = new Int32Array(this.cap);
    this.offs = new Int32Array(this.cap);
    this.lens = new Int32Array(this.cap).fill(-1);
    this.vals = new Array<V | undefined>(this.cap);
    this.used = 0;
    this.size = 0;
  }

  /** FNV-1a of `key[0, len)`. */
  static hash(key: Uint8Array, len: number): number {
    let h = 0x811c9dc5 | 0;
    for (let i = 0; i < len; i++) h = Math.imul(h ^ key[i]!, 0x01000193);
    return h;
  }

  get(key: Uint8Array, len: number, h: number): V | undefined {
    const mask = this.cap - 1;
    for (let slot = h & mask; ; slot = (slot + 1) & mask) {
      const l = this.lens[slot]!;
      if (l < 0) return undefined;
      if (l === len && this.hashes[slot] === h && this.same(slot, key, len)) return this.vals[slot];
    }
  }

  set(key: Uint8Array, len: number, h: number, v: V): void {
    if (this.size >= this.maxEntries) this.clear();
    if ((this.size + 1) * 2 > this.cap) this.grow();
    if (this.used + len > this.arena.length) {
      const bigger = Buffer.alloc(Math.max(this.arena.length * 2, this.used + len));
      this.arena.copy(bigger, 0, 0, this.used);
      this.arena = bigger;
    }
    for (let i = 0; i < len; i++) this.arena[this.used + i] = key[i]!;
    this.place(h, this.used, len, v);
    this.used += len;
    this.size += 1;
  }

  private same(slot: number, key: Uint8Array, len: number): boolean {
    const o = this.offs[slot]!;
    for (let i = 0; i < len; i++) if (this.arena[o + i] !== key[i]) return false;
    return true;
  }

  private place(h: number, off: number, len: number, v: V): void {
    const mask = this.cap - 1;
    let slot = h & mask;
    while (this.lens[slot]! >= 0) slot = (slot + 1) & mask;
    this.hashes[slot] = h;
    this.offs[slot] = off;
    this.lens[slot] = len;
    this.vals[slot] = v;
  }

  private grow(): void {
    const { hashes, offs, lens, vals } = this;
    this.cap *= 2;
    this.hashes = new Int32Array(this.cap);
    this.offs = new Int32Array(this.cap);
    this.lens = new Int32Array(this.cap).fill(-1);
    this.vals = new Array<V | undefined>(this.cap);
    for (let s = 0; s < lens.length; s++)
      if (lens[s]! >= 0) this.place(hashes[s]!, offs[s]!, lens[s]!, vals[s]!);
  }
}
