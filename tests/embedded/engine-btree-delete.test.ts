/**
 * The index tree's direct single-key delete leaves exactly what BTree.delete leaves: the same entries
 * in the same order, a valid tree (sizes and max keys on every path), for random workloads that empty
 * leaves, shrink the tree to its root and grow it again; node for node the same tree when deleting
 * present keys (in random and in key order, which drains leaves to half and merges them); and it works
 * on a cloned (shared) tree. The batch delete of sorted keys (a leaf's keys in one visit) leaves the
 * same entries as BTree.delete of each, and a valid tree.
 */
import { describe, expect, it } from 'vitest';
import { BTree, cmp, random } from './btreeKit.js';
import { deleteKey, deleteSortedKeys } from '../../src/embedded/btreeDelete.js';

type Tree = InstanceType<typeof BTree<string, string>>;
interface RawNode {
  keys: string[];
  children?: RawNode[];
}

/** The tree's shape: every node's keys, depth first. */
function shape(tree: Tree): unknown {
  const walk = (n: RawNode): unknown => (n.children ? [n.keys, n.children.map(walk)] : n.keys);
  return walk((tree as unknown as { _root: RawNode })._root);
}

describe('direct single-key delete in the index tree', () => {
  for (const seed of [1, 2]) {
    it(`matches BTree.delete over random inserts and deletes (seed ${seed})`, () => {
      const rnd = random(seed);
      const direct = new BTree<string, string>(undefined, cmp, 8);
      const general = new BTree<string, string>(undefined, cmp, 8);
      const key = (): string =>
        `k${Math.floor(rnd() * 1500)
          .toString()
          .padStart(5, '0')}`;
      for (let step = 0; step < 8000; step++) {
        // Phases that grow the tree, then drain it almost empty, then grow it again.
        const deleting = Math.floor(step / 2000) % 2 === 1 ? rnd() < 0.85 : rnd() < 0.3;
        const k = key();
        if (deleting) {
          const a = deleteKey(direct, k);
          expect(a).toBe(general.delete(k));
        } else {
          direct.set(k, `v${k}`);
          general.set(k, `v${k}`);
        }
        if (step % 1999 === 0) {
          direct.checkValid(true);
          expect(direct.toArray()).toEqual(general.toArray());
        }
      }
      direct.checkValid(true);
      expect(direct.toArray()).toEqual(general.toArray());
      expect(direct.size).toBe(general.size);
      for (const k of general.keys()) expect(deleteKey(direct, k)).toBe(true);
      expect(direct.size).toBe(0);
      expect(deleteKey(direct, 'k00001')).toBe(false);
    });
  }

  for (const order of ['random', 'key'] as const) {
    it(`leaves the very tree BTree.delete leaves, deleting present keys in ${order} order`, () => {
      const rnd = random(order === 'key' ? 3 : 4);
      const direct = new BTree<string, string>(undefined, cmp, 8);
      const general = new BTree<string, string>(undefined, cmp, 8);
      const keys: string[] = [];
      for (let i = 0; i < 1000; i++) keys.push(`k${String(Math.floor(rnd() * 1e6)).padStart(7, '0')}`);
      for (const k of keys) {
        direct.set(k, 'v');
        general.set(k, 'v');
      }
      const present = [...general.keys()];
      if (order === 'random') present.sort(() => rnd() - 0.5);
      for (const [n, k] of present.entries()) {
        expect(deleteKey(direct, k)).toBe(true);
        expect(general.delete(k)).toBe(true);
        if (n % 7 === 0 || n > present.length - 40)
          expect(JSON.stringify(shape(direct))).toBe(JSON.stringify(shape(general)));
      }
      direct.checkValid(true);
      expect(direct.size).toBe(0);
    });
  }

  it('leaves a clone untouched (shared nodes go through BTree.delete)', () => {
    const tree = new BTree<string, string>(undefined, cmp, 8);
    for (let i = 0; i < 500; i++) tree.set(`k${String(i).padStart(4, '0')}`, 'v');
    const copy = tree.clone();
    for (let i = 0; i < 500; i += 2) expect(deleteKey(tree, `k${String(i).padStart(4, '0')}`)).toBe(true);
    tree.checkValid(true);
    copy.checkValid(true);
    expect(tree.size).toBe(250);
    expect(copy.size).toBe(500);
    expect(deleteKey(tree, 'k0000')).toBe(false);
    expect(deleteKey(tree, 'zzz')).toBe(false);
  });
});

describe('batch delete of sorted keys in the index tree', () => {
  for (const seed of [5, 6, 7]) {
    it(`leaves the entries BTree.delete leaves, over random batches (seed ${seed})`, () => {
      const rnd = random(seed);
      const batched = new BTree<string, string>(undefined, cmp, 8);
      const general = new BTree<string, string>(undefined, cmp, 8);
      const key = (): string => `k${String(Math.floor(rnd() * 3000)).padStart(5, '0')}`;
      for (let round = 0; round < 60; round++) {
        for (let i = Math.floor(rnd() * 400); i > 0; i--) {
          const k = key();
          batched.set(k, `v${k}`);
          general.set(k, `v${k}`);
        }
        // A batch mixes present keys (runs of neighbours and scattered ones), absent keys and repeats.
        const batch: string[] = [];
        const present = [...general.keys()];
        const start = Math.floor(rnd() * present.length);
        batch.push(...present.slice(start, start + Math.floor(rnd() * 300)));
        for (let i = Math.floor(rnd() * 200); i > 0; i--) batch.push(key());
        if (batch.length > 0) batch.push(batch[0]!);
        if (round % 10 === 9) batch.push(...present); // now and then everything: the tree empties
        batch.sort(cmp);
        let expected = 0;
        for (const k of batch) if (general.delete(k)) expected++;
        expect(deleteSortedKeys(batched, batch)).toBe(expected);
        batched.checkValid(true);
        expect(batched.toArray()).toEqual(general.toArray());
      }
    });
  }

  it('leaves a clone untouched and deletes from a root leaf', () => {
    const tree = new BTree<string, string>(undefined, cmp, 8);
    for (let i = 0; i < 500; i++) tree.set(`k${String(i).padStart(4, '0')}`, 'v');
    const copy = tree.clone();
    const evens = Array.from({ length: 250 }, (_, i) => `k${String(2 * i).padStart(4, '0')}`);
    expect(deleteSortedKeys(tree, evens)).toBe(250);
    tree.checkValid(true);
    copy.checkValid(true);
    expect(tree.size).toBe(250);
    expect(copy.size).toBe(500);
    const small = new BTree<string, string>(undefined, cmp, 8);
    for (const k of ['a', 'b', 'c', 'd']) small.set(k, 'v');
    expect(deleteSortedKeys(small, ['a', 'c', 'x'])).toBe(2);
    expect(small.keysArray()).toEqual(['b', 'd']);
    expect(deleteSortedKeys(small, ['b', 'd'])).toBe(2);
    expect(small.size).toBe(0);
    small.checkValid(true);
  });
});
