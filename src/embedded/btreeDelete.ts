/**
 * Removing one key from a sorted-btree without its general range edit. BTree.delete(key) runs
 * editRange(key, key), a scan with callbacks, try/finally merge checks at every level and a root
 * fix-up; removing a document pays that once per index entry, which made deletes the dearest writes.
 *
 * The direct path walks down to the key's leaf and, when the leaf keeps more than half its capacity
 * (so the library would merge nothing), removes the key there and refreshes the sizes and max keys
 * on the path up: the same tree editRange leaves behind. Anything else (a leaf that would fall to
 * half, a shared node of a cloned tree, a leaf without its own values array) goes to BTree.delete.
 */
import type BTreeModule from 'sorted-btree';

/** The tree's own fields this relies on. */
interface TreeInternals {
  _root: Node;
  _maxNodeSize: number;
  _compare: (a: unknown, b: unknown) => number;
}

/** The parts of sorted-btree's nodes this reads and writes (BNode, BNodeInternal in b+tree.js). */
interface Node {
  keys: unknown[];
  values?: unknown[];
  children?: Node[];
  _size?: number;
  isShared?: boolean;
  indexOf(key: unknown, failXor: number, cmp: (a: unknown, b: unknown) => number): number;
  maxKey(): unknown;
}

/** Removes `key` from `tree`; true when it was there (as BTree.delete). */
export function deleteKey<K, V>(tree: InstanceType<typeof BTreeModule.default<K, V>>, key: K): boolean {
  const t = tree as unknown as TreeInternals;
  const cmp = t._compare;
  const root = t._root;
  const path: Node[] = [];
  const slots: number[] = [];
  let node = root;
  while (node.children !== undefined) {
    if (node.isShared) return tree.delete(key);
    const i = node.indexOf(key, 0, cmp);
    if (i >= node.children.length) return false; // above the largest key
    path.push(node);
    slots.push(i);
    node = node.children[i] as Node;
  }
  const j = node.indexOf(key, -1, cmp);
  if (j < 0) return false;
  const values = node.values;
  if (
    node.isShared ||
    values === undefined ||
    values.length !== node.keys.length ||
    (node !== root && node.keys.length - 1 <= t._maxNodeSize >> 1)
  )
    return tree.delete(key);
  node.keys.splice(j, 1);
  values.splice(j, 1);
  for (let level = path.length - 1; level >= 0; level--) {
    const parent = path[level] as Node;
    const slot = slots[level] as number;
    parent._size = (parent._size as number) - 1;
    parent.keys[slot] = (parent.children as Node[])[slot]!.maxKey();
  }
  return true;
}
