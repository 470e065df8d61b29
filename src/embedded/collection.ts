/**
 * A collection: documents by canonical _id, in insertion order, plus its indexes.
 * Every mutation keeps indexes consistent and checks unique constraints before touching anything.
 */
import { UUID, type Binary, type Document } from 'bson';
import { createHash } from 'node:crypto';
import { CommandError } from './errors.js';
import { canonicalKey, compareValues, isPlainObject, typeRank, Rank } from './bsonOrder.js';
import { Index, changedTopFields, type IndexKey, type IndexSpec } from './indexes.js';
import { encodeValue } from './keyString.js';

export class Collection {
  readonly docs = new Map<string, Document>();
  readonly indexes = new Map<string, Index>();
  /** Stays with the collection through renames, as MongoDB's collection UUID does; a new collection gets a new one. */
  readonly uuid: Binary;

  constructor(
    public db: string,
    public name: string,
    public options: Document = {},
    uuid?: Binary,
  ) {
    this.uuid = uuid ?? new UUID();
    this.indexes.set('_id_', new Index({ v: 2, key: { _id: 1 }, name: '_id_' }));
  }

  /** Pre- and post-images of this collection's changes are kept for change streams. */
  get recordsImages(): boolean {
    return (this.options.changeStreamPreAndPostImages as Document | undefined)?.enabled === true;
  }

  get ns(): string {
    return `${this.db}.${this.name}`;
  }

  get(id: unknown): Document | undefined {
    return this.docs.get(canonicalKey(id));
  }

  /** Throws DuplicateKey if `doc` would violate a unique index (ignoring the document's own entries). */
  checkUnique(doc: Document, replacing?: Document, changed?: ReadonlySet<string>): void {
    const idk = canonicalKey(doc._id);
    if (!replacing && this.docs.has(idk)) throw this.duplicate(this.indexes.get('_id_') as Index, [doc._id]);
    for (const index of this.indexes.values()) {
      if (!index.spec.unique || index.isIdIndex) continue;
      // Keys a new version shares with the one it replaces belong to this document already.
      if (replacing && (changed ? !index.readsAny(changed) : index.sameInputs(replacing, doc))) continue;
      const conflict = index.findConflict(doc);
      if (conflict) throw this.duplicate(index, conflict);
    }
  }

  insert(doc: Document): void {
    validateStoredDoc(doc);
    const idKey = canonicalKey(doc._id);
    if (this.docs.has(idKey)) throw this.duplicate(this.indexes.get('_id_') as Index, [doc._id]);
    for (const index of this.indexes.values()) {
      if (!index.spec.unique || index.isIdIndex) continue;
      const conflict = index.findConflict(doc);
      if (conflict) throw this.duplicate(index, conflict);
    }
    this.docs.set(idKey, doc);
    const idCode = this.indexes.size > 1 ? (encodeValue(doc._id) ?? null) : undefined;
    for (const index of this.indexes.values()) index.add(doc, undefined, idKey, idCode);
  }

  /** Replaces a document with a new version carrying the same _id. */
  replace(oldDoc: Document, newDoc: Document): void {
    validateStoredDoc(newDoc);
    // The fields that changed, found once for every index (see changedTopFields).
    const changed = changedTopFields(oldDoc, newDoc);
    this.checkUnique(newDoc, oldDoc, changed);
    const idKey = canonicalKey(newDoc._id);
    // The _id encoded once for every index whose entry moves (a job's claim moves four or five).
    let idCode: string | null | undefined;
    for (const index of this.indexes.values()) {
      // The _id never changes, so neither does the _id index entry.
      if (index.isIdIndex || !index.readsAny(changed)) continue;
      idCode ??= encodeValue(newDoc._id) ?? null;
      if (idCode !== null && index.move(oldDoc, newDoc, idKey, idCode)) continue;
      const before = index.keysFor(oldDoc);
      const after = index.keysFor(newDoc);
      if (sameKeys(before, after)) continue;
      idCode ??= encodeValue(newDoc._id) ?? null;
      index.remove(oldDoc, before, idCode);
      index.add(newDoc, after, idKey, idCode);
    }
    this.docs.set(idKey, newDoc);
  }

  remove(doc: Document): void {
    const idCode = this.indexes.size > 1 ? (encodeValue(doc._id) ?? null) : undefined;
    for (const index of this.indexes.values()) index.remove(doc, undefined, idCode);
    this.docs.delete(canonicalKey(doc._id));
  }

  /** Removes many documents: each index drops their entries in its own key order (Index.removeMany). */
  removeMany(docs: Document[]): void {
    if (docs.length === 1) return this.remove(docs[0] as Document);
    const idCodes = this.indexes.size > 1 ? docs.map((d) => encodeValue(d._id) ?? null) : undefined;
    for (const index of this.indexes.values()) index.removeMany(docs, idCodes);
    for (const doc of docs) this.docs.delete(canonicalKey(doc._id));
  }

  addIndex(spec: IndexSpec): void {
    const index = new Index(spec);
    for (const doc of this.docs.values()) {
      const keys = index.keysFor(doc);
      const conflict = index.findConflict(doc, keys);
      if (conflict) throw this.duplicate(index, conflict);
      index.add(doc, keys);
    }
    this.indexes.set(spec.name, index);
  }

  clear(): void {
    this.docs.clear();
    for (const index of this.indexes.values()) index.clear();
  }

  duplicate(index: Index, key: IndexKey): CommandError {
    const keyPattern = index.spec.key;
    const keyValue: Document = {};
    index.fields.forEach(([path], i) => (keyValue[path] = key[i]));
    const shown = index.fields.map(([path], i) => `${path}: ${formatValue(key[i])}`).join(', ');
    return new CommandError(
      'DuplicateKey',
      `E11000 duplicate key error collection: ${this.ns} index: ${index.name} dup key: { ${shown} }`,
      { keyPattern, keyValue },
    );
  }
}

function sameKeys(a: IndexKey[], b: IndexKey[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as IndexKey;
    const y = b[i] as IndexKey;
    for (let j = 0; j < x.length; j++) if (x[j] !== y[j] && compareValues(x[j], y[j]) !== 0) return false;
  }
  return true;
}

/** How MongoDB prints a value inside a duplicate-key message. */
export function formatValue(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (v instanceof Date) return `new Date(${v.getTime()})`;
  if (Array.isArray(v)) return `[ ${v.map(formatValue).join(', ')} ]`;
  if (typeRank(v) === Rank.ObjectId) return `ObjectId('${(v as { toHexString(): string }).toHexString()}')`;
  if (isPlainObject(v)) {
    const inner = Object.entries(v)
      .map(([k, x]) => `${k}: ${formatValue(x)}`)
      .join(', ');
    return inner ? `{ ${inner} }` : '{}';
  }
  return String(v);
}

/** Rules every stored document follows: an _id that is not an array, a regex or undefined. */
export function validateStoredDoc(doc: Document): void {
  const id = doc._id as unknown;
  if (Array.isArray(id)) throw new CommandError('InvalidIdField', `The '_id' value cannot be of type array`);
  if (isPlainObject(id) && Object.keys(id).some((k) => k.startsWith('$'))) {
    throw new CommandError(
      'DollarPrefixedFieldName',
      `_id fields may not contain '$'-prefixed fields: ${Object.keys(id).find((k) => k.startsWith('$'))} is not valid for storage.`,
    );
  }
  if (id instanceof RegExp || typeRank(id) === Rank.Regex) {
    throw new CommandError('InvalidIdField', `The '_id' value cannot be of type regex`);
  }
}

/** A stable UUID for a collection persisted before collections had one: derived from its namespace. */
export function legacyUuid(db: string, coll: string): Binary {
  const bytes = createHash('sha256').update(`${db}.${coll}`).digest().subarray(0, 16);
  bytes[6] = ((bytes[6] as number) & 0x0f) | 0x80; // version 8: custom
  bytes[8] = ((bytes[8] as number) & 0x3f) | 0x80; // RFC 4122 variant
  return new UUID(bytes);
}
