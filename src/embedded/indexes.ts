/**
 * One secondary (or the _id) index: a B+tree of [field values..., _id] → canonical _id key.
 * Multikey fields get one entry per array element, as in MongoDB. The tree holds each key as an
 * order-preserving string where its values allow (keyString.ts), else as the array itself.
 */
import BTreeModule from 'sorted-btree';
import type { Document } from 'bson';
import { compileFilter, type Matcher } from './mql.js';
import { canonicalKey, compareValues, isPlainObject, pathValues } from './bsonOrder.js';
import { decodeKey, encodeElement, encodeKey, keyValueReader, type KeySentinels } from './keyString.js';
import type { IndexSpecRecord } from './persistenceTypes.js';
import { deleteKey, deleteSortedKeys } from './btreeDelete.js';
import { forRangeSpans, type Span } from './btreeScan.js';

// sorted-btree is CommonJS with an ES-style default export: Node puts the class on .default,
// bundlers (vitest) hand it over directly.
type BTreeClass = typeof BTreeModule.default;
const BTree: BTreeClass =
  (BTreeModule as unknown as { default?: BTreeClass }).default ?? (BTreeModule as unknown as BTreeClass);
type Tree = InstanceType<typeof BTree<TreeKey, string>>;

/** An index as the engine holds it: what the log persists, plus the fields listIndexes reports. */
export interface IndexSpec extends IndexSpecRecord {
  v?: number;
  hidden?: boolean;
}

/** Sentinels below/above every value at one key position, in key order (direction already applied). */
export const KEY_MIN = Symbol('keyMin');
export const KEY_MAX = Symbol('keyMax');
export type IndexKey = unknown[];
/** A key as the tree holds it: encoded, or the values themselves when a type has no encoding. */
type TreeKey = string | IndexKey;
const SENTINELS: KeySentinels = { min: KEY_MIN, max: KEY_MAX };

export class Index {
  readonly fields: Array<[string, number]>;
  private readonly parts: string[][];
  private readonly tree: Tree;
  private readonly partial: Matcher | undefined;
  /** Each position's direction, the trailing _id included. */
  private readonly dirs: number[];
  /** Compares keys in either form (see keyString.ts). */
  readonly comparator: (a: IndexKey, b: IndexKey) => number;
  /**
   * The top-level fields this index's keys depend on (its key paths' and its partial filter's first
   * segments), or undefined when the partial filter names fields in a form not followed here.
   */
  private readonly topFields: string[] | undefined;
  multikey = false;

  constructor(readonly spec: IndexSpec) {
    this.fields = Object.entries(spec.key).map(([k, v]) => [k, typeof v === 'number' && v < 0 ? -1 : 1]);
    this.parts = this.fields.map(([k]) => k.split('.'));
    const dirs = [...this.fields.map(([, d]) => d), 1];
    this.dirs = dirs;
    const decode = (k: TreeKey): IndexKey => (typeof k === 'string' ? decodeKey(k, dirs, SENTINELS) : k);
    this.tree = new BTree<TreeKey, string>(undefined, (a, b) =>
      // a > b would walk the common prefix again; unequal strings mostly differ in length or early.
      typeof a === 'string' && typeof b === 'string'
        ? a < b
          ? -1
          : a === b
            ? 0
            : 1
        : compareKeys(decode(a), decode(b), dirs),
    );
    this.comparator = (a, b) => compareKeys(a, b, dirs);
    this.partial = spec.partialFilterExpression ? compileFilter(spec.partialFilterExpression) : undefined;
    const partialFields = spec.partialFilterExpression ? filterTopFields(spec.partialFilterExpression) : [];
    this.topFields = partialFields
      ? [...new Set([...this.parts.map((p) => p[0] as string), ...partialFields])]
      : undefined;
  }

  /**
   * True when two versions of a document certainly have the same keys here: every field the keys
   * depend on holds the very same value (an update copies only the fields it changes, so the others
   * are shared). False means "compute them".
   */
  sameInputs(a: Document, b: Document): boolean {
    const fields = this.topFields;
    if (!fields) return false;
    for (const f of fields) if (a[f] !== b[f]) return false;
    return true;
  }

  /**
   * False when no field this index's keys depend on is among `changed` (changedTopFields of two
   * versions of a document): its keys are then certainly the same. What sameInputs tells, for a
   * caller that visits every index of a collection with one set.
   */
  readsAny(changed: ReadonlySet<string>): boolean {
    const fields = this.topFields;
    if (!fields) return true;
    for (let i = 0; i < fields.length; i++) if (changed.has(fields[i] as string)) return true;
    return false;
  }

  get name(): string {
    return this.spec.name;
  }

  get isIdIndex(): boolean {
    return this.spec.name === '_id_';
  }

  /** The key values (without the trailing _id) this document contributes; none when it is not indexed. */
  keysFor(doc: Document): IndexKey[] {
    if (this.partial && !this.partial.test(doc)) return [];
    const simple = this.simpleKey(doc);
    if (simple) return simple;
    const perField: unknown[][] = [];
    let present = false;
    for (const [path] of this.fields) {
      const { values, multikey } = pathValues(doc, path);
      if (multikey) this.multikey = true;
      if (values.some((v) => v !== undefined)) present = true;
      perField.push(values.map((v) => (v === undefined ? null : v)));
    }
    if (this.spec.sparse && !present) return [];
    let keys: IndexKey[] = [[]];
    for (const values of perField) {
      const next: IndexKey[] = [];
      for (const k of keys) for (const v of values) next.push([...k, v]);
      keys = next;
    }
    if (keys.length <= 1) return keys;
    const seen = new Set<string>();
    return keys.filter((k) => {
      const c = canonicalKey(k);
      if (seen.has(c)) return false;
      seen.add(c);
      return true;
    });
  }

  /**
   * The single key of a document whose indexed paths meet no array (the common case), without
   * the general expansion; undefined when an array is on the way.
   */
  private simpleKey(doc: Document): IndexKey[] | undefined {
    const key: IndexKey = [];
    let present = false;
    for (const parts of this.parts) {
      let v: unknown = doc;
      for (const p of parts) {
        if (v === null || typeof v !== 'object') {
          v = undefined;
          break;
        }
        if (Array.isArray(v)) return undefined;
        if (!isPlainObject(v)) {
          v = undefined;
          break;
        }
        v = v[p];
      }
      if (Array.isArray(v)) return undefined;
      if (v === undefined) v = null;
      else present = true;
      key.push(v);
    }
    if (this.spec.sparse && !present) return [];
    return [key];
  }

  /**
   * The tree key of a document's one entry, encoded straight from the document (as entryKey of its
   * simpleKey, without the key's arrays): null when the document has no entry here (a partial filter
   * it fails, a sparse index it is missing from); undefined when the general path must decide (an
   * array on a key path, a value whose type has no encoding).
   */
  encodedEntry(doc: Document, idCode: string): string | null | undefined {
    if (this.partial && !this.partial.test(doc)) return null;
    const n = this.parts.length;
    const out = new Array<string>(n + 1);
    let present = false;
    for (let i = 0; i < n; i++) {
      const parts = this.parts[i] as string[];
      let v: unknown = doc;
      for (let j = 0; j < parts.length; j++) {
        if (v === null || typeof v !== 'object') {
          v = undefined;
          break;
        }
        if (Array.isArray(v)) return undefined;
        if (!isPlainObject(v)) {
          v = undefined;
          break;
        }
        v = v[parts[j] as string];
      }
      if (Array.isArray(v)) return undefined;
      if (v === undefined) v = null;
      else present = true;
      const e = encodeElement(v, (this.dirs[i] as number) < 0);
      if (e === undefined) return undefined;
      out[i] = e;
    }
    if (this.spec.sparse && !present) return null;
    out[n] = idCode;
    // join() builds one flat string (see encodeKey).
    return out.join('');
  }

  /**
   * Moves a document's entry from its old version's key to its new one's, when both have at most one
   * entry that encodes (encodedEntry); false, having changed nothing, when the general path must do it.
   * Equal encodings are equal keys, so an entry whose key did not change is left alone.
   */
  move(oldDoc: Document, newDoc: Document, idKey: string, idCode: string): boolean {
    const before = this.encodedEntry(oldDoc, idCode);
    if (before === undefined) return false;
    const after = this.encodedEntry(newDoc, idCode);
    if (after === undefined) return false;
    if (before === after) return true;
    if (before !== null) deleteKey(this.tree, before);
    if (after !== null) this.tree.set(after, idKey);
    return true;
  }

  /**
   * `idCode` (here, in remove and removeMany): the document's _id as encodeValue gives it, when the
   * caller visits several indexes (each entry ends with the _id, always ascending); null when the _id
   * has no encoding.
   */
  add(doc: Document, keys?: IndexKey[], idKey: string = canonicalKey(doc._id), idCode?: string | null): void {
    if (keys === undefined && idCode) {
      const entry = this.encodedEntry(doc, idCode);
      if (entry !== undefined) {
        if (entry !== null) this.tree.set(entry, idKey);
        return;
      }
    }
    for (const k of keys ?? this.keysFor(doc)) this.tree.set(this.entryKey(k, doc._id, idCode), idKey);
  }

  /** The tree's key of one entry: the key's values then the _id (given encoded, when it can be). */
  private entryKey(k: IndexKey, id: unknown, idCode: string | null | undefined): TreeKey {
    return (idCode ? encodeKey(k, this.dirs, SENTINELS, idCode) : undefined) ?? this.treeKey(withId(k, id));
  }

  remove(doc: Document, keys?: IndexKey[], idCode?: string | null): void {
    if (keys === undefined && idCode) {
      const entry = this.encodedEntry(doc, idCode);
      if (entry !== undefined) {
        if (entry !== null) deleteKey(this.tree, entry);
        return;
      }
    }
    for (const k of keys ?? this.keysFor(doc)) deleteKey(this.tree, this.entryKey(k, doc._id, idCode));
  }

  /**
   * Removes the entries of many documents. In key order, consecutive removals walk down the same
   * nodes, which are then in cache: in arrival order, each walk touches a cold path of a large tree.
   */
  removeMany(docs: Document[], idCodes?: (string | null)[]): void {
    // An empty index (a partial one no document has entered, say) has nothing to remove.
    if (this.tree.size === 0) return;
    const keys: TreeKey[] = [];
    for (let i = 0; i < docs.length; i++) {
      const doc = docs[i] as Document;
      const idCode = idCodes?.[i];
      if (idCode) {
        const entry = this.encodedEntry(doc, idCode);
        if (entry !== undefined) {
          if (entry !== null) keys.push(entry);
          continue;
        }
      }
      for (const k of this.keysFor(doc)) keys.push(this.entryKey(k, doc._id, idCode));
    }
    keys.sort(this.tree._compare);
    deleteSortedKeys(this.tree, keys);
  }

  /** A key (or bound) as the tree holds it: encoded when every value can be. */
  private treeKey(key: IndexKey): TreeKey {
    return encodeKey(key, this.dirs, SENTINELS) ?? key;
  }

  private keyOf(k: TreeKey): IndexKey {
    return typeof k === 'string' ? decodeKey(k, this.dirs, SENTINELS) : k;
  }

  /** Visits every entry between two full keys (inclusive) in key order; the key is the tree's form. */
  forRange(lower: IndexKey, upper: IndexKey, visit: (key: unknown, id: string) => void): void {
    forRangeSpans(this.tree, this.treeKey(lower), this.treeKey(upper), (keys, ids, from, to) => {
      for (let i = from; i < to; i++) visit(keys[i], ids[i]!);
    });
  }

  /**
   * The entries between two full keys (inclusive) in key order, a leaf's run at a time: keys (the
   * tree's form) and canonical _id keys [from, to). For a scan that reads every entry (a covered read).
   */
  forRangeSpans(lower: IndexKey, upper: IndexKey, span: Span<unknown, string>): void {
    forRangeSpans(this.tree, this.treeKey(lower), this.treeKey(upper), span);
  }

  /**
   * For a covered read: reads the values of top-level `paths` (key fields, or the trailing _id) from a
   * key as the tree holds it into `out`, in the order of `paths`, dates as their milliseconds.
   * undefined when a path is not in the key, more than 31 are read, or the index is multikey (a key
   * then holds one element, not the field's value). The reader returns the mask of the `out` slots
   * holding dates, or -1 when the key cannot stand for the document's values (see keyValueReader).
   */
  coveredReader(paths: string[]): ((key: unknown, out: unknown[]) => number) | undefined {
    if (this.multikey || this.spec.sparse || paths.length > 31) return undefined;
    const positions: number[] = [];
    for (const path of paths) {
      const pos = this.fields.findIndex(([f]) => f === path);
      if (pos >= 0) positions.push(pos);
      else if (path === '_id') positions.push(this.fields.length);
      else return undefined;
    }
    if (positions.length === 0) return () => 0;
    const read = keyValueReader(this.dirs, positions);
    return (key, out) => (typeof key === 'string' ? read(key, out) : -1);
  }

  /** How many entries the index holds. */
  get size(): number {
    return this.tree.size;
  }

  clear(): void {
    this.tree.clear();
  }

  /** For a unique index: the first key of `doc` already held by another document. */
  findConflict(doc: Document, keys: IndexKey[] = this.keysFor(doc)): IndexKey | undefined {
    if (!this.spec.unique) return undefined;
    const self = canonicalKey(doc._id);
    for (const k of keys) {
      // Equal values encode identically, so an encoded entry shares the key's prefix exactly.
      const prefix = encodeKey(k, this.dirs, SENTINELS);
      for (const [entry, id] of this.tree.entries(this.treeKey([...k, KEY_MIN]))) {
        const same =
          prefix !== undefined && typeof entry === 'string'
            ? entry.startsWith(prefix)
            : sameKeyPrefix(this.keyOf(entry), k);
        if (!same) break;
        if (id !== self) return k;
      }
    }
    return undefined;
  }

  /** Canonical _id keys in key order between two full keys (inclusive), forward or backward. */
  *scan(lower: IndexKey, upper: IndexKey, reverse: boolean): Generator<string> {
    for (const [, id] of this.treeEntries(lower, upper, reverse)) yield id;
  }

  /** Entries (key, _id key) in key order from `lower`, for merging several ranges. */
  *entriesFrom(lower: IndexKey, upper: IndexKey, reverse: boolean): Generator<[IndexKey, string]> {
    for (const [k, id] of this.treeEntries(lower, upper, reverse)) yield [this.keyOf(k), id];
  }

  private *treeEntries(lower: IndexKey, upper: IndexKey, reverse: boolean): Generator<[TreeKey, string]> {
    const cmp = this.tree._compare;
    const lo = this.treeKey(lower);
    const hi = this.treeKey(upper);
    if (!reverse) {
      for (const e of this.tree.entries(lo)) {
        if (cmp(e[0], hi) > 0) return;
        yield e;
      }
    } else {
      for (const e of this.tree.entriesReversed(hi)) {
        if (cmp(e[0], lo) < 0) return;
        yield e;
      }
    }
  }

  describe(): Document {
    const out: Document = { v: this.spec.v ?? 2, key: this.spec.key, name: this.spec.name };
    if (this.spec.unique) out.unique = true;
    if (this.spec.sparse) out.sparse = true;
    if (this.spec.partialFilterExpression) out.partialFilterExpression = this.spec.partialFilterExpression;
    if (this.spec.expireAfterSeconds !== undefined) out.expireAfterSeconds = this.spec.expireAfterSeconds;
    if (this.spec.hidden) out.hidden = true;
    return out;
  }
}

/**
 * The top-level fields whose values differ between two versions of a document (or that only one of
 * them has), each value compared by identity as sameInputs does. One pass over each version's own
 * keys: far cheaper than looking up each index's fields by name in both (property loads by a computed
 * name miss V8's caches; a for...in loop reads through the object's enumeration cache).
 */
export function changedTopFields(a: Document, b: Document): Set<string> {
  const changed = new Set<string>();
  for (const k in b) if (a[k] !== b[k]) changed.add(k);
  for (const k in a) if (!(k in b)) changed.add(k);
  return changed;
}

/** Top-level fields a partial filter reads, or undefined for an operator not followed here. */
function filterTopFields(filter: Document): string[] | undefined {
  const out: string[] = [];
  for (const [field, cond] of Object.entries(filter)) {
    if (field === '$and' || field === '$or' || field === '$nor') {
      if (!Array.isArray(cond)) return undefined;
      for (const sub of cond) {
        if (!isPlainObject(sub)) return undefined;
        const inner = filterTopFields(sub);
        if (!inner) return undefined;
        out.push(...inner);
      }
    } else if (field.startsWith('$')) return undefined;
    else out.push(field.split('.')[0] as string);
  }
  return out;
}

function withId(key: IndexKey, id: unknown): IndexKey {
  const full = key.slice();
  full.push(id);
  return full;
}

function sameKeyPrefix(entry: IndexKey, key: IndexKey): boolean {
  for (let i = 0; i < key.length; i++) if (compareValues(entry[i], key[i]) !== 0) return false;
  return true;
}

export function compareKeys(a: IndexKey, b: IndexKey, dirs: number[]): number {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i];
    const y = b[i];
    if (x === y) {
      if (x === KEY_MIN || x === KEY_MAX) continue;
    }
    if (x === KEY_MIN) return -1;
    if (y === KEY_MIN) return 1;
    if (x === KEY_MAX) return 1;
    if (y === KEY_MAX) return -1;
    const c = compareValues(x, y);
    if (c !== 0) return c * (dirs[i] ?? 1);
  }
  return 0;
}

/** Normalises a createIndexes key pattern; only ascending/descending keys are supported. */
export function validateKeyPattern(key: unknown): string | undefined {
  if (!isPlainObject(key) || Object.keys(key).length === 0)
    return 'The index key pattern must be a non-empty object';
  for (const [k, v] of Object.entries(key)) {
    if (typeof v === 'string')
      return `Index type '${v}' on field '${k}' is not supported by the embedded server`;
    const n = typeof v === 'number' ? v : Number(v);
    if (!Number.isFinite(n) || n === 0)
      return `Values in the index key pattern must be 1 or -1, found ${String(v)} for '${k}'`;
  }
  return undefined;
}

export function defaultIndexName(key: Document): string {
  return Object.entries(key)
    .map(([k, v]) => `${k}_${String(v)}`)
    .join('_');
}
