/** What the B-tree tests share: sorted-btree's class, a replayable generator and a string comparison. */
import BTreeModule from 'sorted-btree';

// sorted-btree is CommonJS with an ES-style default export (see src/embedded/indexes.ts).
type BTreeClass = typeof BTreeModule.default;
export const BTree: BTreeClass =
  (BTreeModule as unknown as { default?: BTreeClass }).default ?? (BTreeModule as unknown as BTreeClass);

/** A small deterministic generator, so a failure replays. */
export function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return s / 2 ** 32;
  };
}

export const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
