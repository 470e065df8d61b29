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
 *
 * deleteSortedKeys does the same for a sorted batch, removing all the batch's keys that fall in one
 * leaf in one visit; the tree keeps the same entries as after BTree.delete of each key, not
 * necessarily the same node boundaries.
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
  return deleteRun(tree, [key], 0) === 1;
}

/**
 * Removes every key of `keys`, which must be sorted in the tree's order; returns how many were there.
 * Keys that fall in the same leaf go in one visit: one walk down, one pass of the leaf, one fix-up on
 * the way up. Deleting a batch in key order so touches each node once instead of once per key.
 */
export function deleteSortedKeys<K, V>(
  tree: InstanceType<typeof BTreeModule.default<K, V>>,
  keys: K[],
): number {
  let removed = 0;
  for (let i = 0; i < keys.length;) {
    const before = i;
    removed += deleteRun(tree, keys, i, (next) => (i = next));
    if (i === before) i++;
  }
  return removed;
}

/**
 * Removes keys[from] and the keys after it that belong to the same leaf; reports through `advance`
 * the index of the first key it did not look at, and returns how many keys it removed.
 */
function deleteRun<K, V>(
  tree: InstanceType<typeof BTreeModule.default<K, V>>,
  keys: K[],
  from: number,
  advance?: (next: number) => void,
): number {
  const t = tree as unknown as TreeInternals;
  const cmp = t._compare;
  const root = t._root;
  const key = keys[from] as K;
  const path: Node[] = [];
  const slots: number[] = [];
  let node = root;
  while (node.children !== undefined) {
    if (node.isShared) return tree.delete(key) ? 1 : 0;
    const i = node.indexOf(key, 0, cmp);
    if (i >= node.children.length) return 0; // above the largest key
    path.push(node);
    slots.push(i);
    node = node.children[i] as Node;
  }
  const leafKeys = node.keys;
  const j = node.indexOf(key, -1, cmp);
  if (j < 0) return 0;
  const values = node.values;
  if (node.isShared || values === undefined || values.length !== leafKeys.length)
    return tree.delete(key) ? 1 : 0;
  // The keys after `key` that this leaf would hold (up to its largest), removed in one merge pass.
  const last = leafKeys.length - 1;
  let end = from + 1;
  while (end < keys.length && cmp(keys[end], leafKeys[last]) <= 0) end++;
  // A leaf holding the whole tree could be emptied: that is BTree.delete's case (its root handling).
  if (leafKeys.length === root.size() && end - from >= leafKeys.length) return tree.delete(key) ? 1 : 0;
  let write = j;
  let read = j + 1;
  for (let k = from + 1; k < end; k++) {
    const want = keys[k];
    while (read <= last && cmp(leafKeys[read], want) < 0) {
      leafKeys[write] = leafKeys[read];
      values[write++] = values[read++];
    }
    if (read <= last && cmp(leafKeys[read], want) === 0) read++;
  }
  while (read <= last) {
    leafKeys[write] = leafKeys[read];
    values[write++] = values[read++];
  }
  const count = last + 1 - write;
  leafKeys.length = write;
  values.length = write;
  advance?.(end);
  const half = t._maxNodeSize >> 1;
  for (let level = path.length - 1; level >= 0; level--) {
    const parent = path[level] as Node;
    const slot = slots[level] as number;
    const children = parent.children as Node[];
    parent._size = (parent._size as number) - count;
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
  return count;
}
