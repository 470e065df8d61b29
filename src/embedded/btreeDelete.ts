/**
 * Removing one key from a sorted-btree without its general range edit. BTree.delete(key) runs
 * editRange(key, key), a scan with callbacks, try/finally merge checks at every level and a root
 * fix-up; removing a document pays that once per index entry, which made deletes the dearest writes.
 *
 * The direct path walks down to the key's leaf, removes the key there, and then, level by level on
 * the way up, does what editRange's unwinding does: refresh the child's max key and the size, then
 * look at the child and its left neighbour and merge one that fell to half capacity or less with its
 * right sibling (the library's own tryMerge) or drop it when empty; at the top, an internal root left
 * with one child gives way to it. So the tree left behind is the one BTree.delete leaves, node for
 * node. A cleanup deletes in key order, which keeps leaves at half capacity: that case, the common one
 * there, used to go through BTree.delete. Anything else (a shared node of a cloned tree on the path, a
 * leaf without its own values array, the last key of the tree) goes to BTree.delete.
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
  size(): number;
  /** BNodeInternal: merges child i with child i + 1 when both fit in one node. */
  tryMerge?(i: number, maxSize: number): boolean;
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
  if (node.isShared || values === undefined || values.length !== node.keys.length || root.size() === 1)
    return tree.delete(key);
  node.keys.splice(j, 1);
  values.splice(j, 1);
  const half = t._maxNodeSize >> 1;
  for (let level = path.length - 1; level >= 0; level--) {
    const parent = path[level] as Node;
    const slot = slots[level] as number;
    const children = parent.children as Node[];
    parent._size = (parent._size as number) - 1;
    parent.keys[slot] = children[slot]!.maxKey();
    // editRange's merge pass over the range it edited, widened by one to the left.
    for (let i = slot; i >= (slot > 0 ? slot - 1 : 0); i--) {
      const child = children[i] as Node;
      if (child.keys.length > half) continue;
      if (child.keys.length !== 0)
        (parent.tryMerge as NonNullable<Node['tryMerge']>).call(parent, i, t._maxNodeSize);
      else {
        parent.keys.splice(i, 1);
        children.splice(i, 1);
      }
    }
  }
  let top = root;
  while (top.children !== undefined && top.keys.length <= 1) top = top.children[0] as Node;
  t._root = top;
  return true;
}
