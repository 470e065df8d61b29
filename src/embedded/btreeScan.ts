/**
 * A range of a sorted-btree visited leaf by leaf. BTree.forRange binary-searches both bounds in every
 * leaf it passes and calls back once per entry through two levels of node methods; a covered $group
 * over a million index entries paid that search per leaf and the calls per entry. Here only the nodes
 * on the two edges of the range are searched (an internal node's key i is the largest key under child
 * i, so every child strictly between the edges lies wholly inside the range), and each leaf's run of
 * entries is handed over at once as (keys, values, from, to): the caller's loop reads the arrays.
 */
import type BTreeModule from 'sorted-btree';

/** The parts of sorted-btree's tree and nodes this reads (BTree, BNode, BNodeInternal in b+tree.js). */
interface TreeInternals {
  _root: Node;
  _compare: (a: unknown, b: unknown) => number;
}

interface Node {
  keys: unknown[];
  values: unknown[];
  children?: Node[];
  /** The key's index, else its insertion point (xor failXor): sorted-btree's own binary search. */
  indexOf(key: unknown, failXor: number, cmp: (a: unknown, b: unknown) => number): number;
}

/** Receives one leaf's entries keys[from..to) and their values, in key order. */
export type Span<K, V> = (keys: readonly K[], values: readonly V[], from: number, to: number) => void;

/**
 * Hands every entry with low <= key <= high to `span`, in key order, a leaf's run at a time. The tree
 * must not change during the walk (as for BTree.forRange without editing).
 */
export function forRangeSpans<K, V>(
  tree: InstanceType<typeof BTreeModule.default<K, V>>,
  low: K,
  high: K,
  span: Span<K, V>,
): void {
  const t = tree as unknown as TreeInternals;
  walk(t._root, low, high, true, true, t._compare, span as Span<unknown, unknown>);
}

function walk(
  node: Node,
  low: unknown,
  high: unknown,
  checkLow: boolean,
  checkHigh: boolean,
  cmp: (a: unknown, b: unknown) => number,
  span: Span<unknown, unknown>,
): void {
  const keys = node.keys;
  // The first key at or above low (an insertion point is the first key above it).
  const from = checkLow ? node.indexOf(low, 0, cmp) : 0;
  const children = node.children;
  if (children === undefined) {
    let to = keys.length;
    if (checkHigh) {
      const i = node.indexOf(high, -1, cmp);
      to = i < 0 ? ~i : i + 1;
    }
    if (from < to) span(keys, node.values, from, to);
    return;
  }
  // The first child whose largest key reaches high: the children after it hold only keys above high.
  const last = checkHigh ? Math.min(node.indexOf(high, 0, cmp), keys.length - 1) : keys.length - 1;
  for (let i = from; i <= last; i++)
    walk(children[i]!, low, high, checkLow && i === from, checkHigh && i === last, cmp, span);
}
