/**
 * MongoDB's size limits, advertised in hello and enforced from these same constants, and the errors
 * MongoDB (7.0) gives when they are passed:
 *   - a stored document is at most maxBsonObjectSize (16 MiB) of BSON; an insert over it is refused with
 *     BadValue "object to insert too large", an update whose result is over it with 17419, an upsert
 *     with 17420;
 *   - a stored document nests at most 180 levels (maxBSONDepth, 200, less the 20 MongoDB keeps for its
 *     own wrappers); past it an insert or an update is refused with Overflow;
 *   - any other BSON object the server reads or builds (a command, an aggregation result, a reply) may
 *     be 16 KiB larger, the allowance for a command's own fields around a full-size document; past that
 *     it is refused with BSONObjectTooLarge (10334);
 *   - a message is at most maxMessageSizeBytes; a larger one closes the connection;
 *   - a write command carries at most maxWriteBatchSize statements (InvalidLength otherwise);
 *   - a cursor batch holds at most 16 MiB of documents, but always at least one.
 */
import { BSON, type Document } from 'bson';
import { isPlainObject } from './bsonOrder.js';
import { CommandError } from './errors.js';

export const MAX_BSON_OBJECT_SIZE = 16 * 1024 * 1024;
/** BSONObjMaxInternalSize: a command or result may exceed a document by this much. */
export const MAX_INTERNAL_BSON_SIZE = MAX_BSON_OBJECT_SIZE + 16 * 1024;
export const MAX_MESSAGE_SIZE_BYTES = 48_000_000;
export const MAX_WRITE_BATCH_SIZE = 100_000;
/** Documents in one find/aggregate/getMore batch, in bytes (the first document always goes). */
export const MAX_BATCH_BYTES = MAX_BSON_OBJECT_SIZE;
/** What an _id generated for an inserted document adds: type, "_id\0" and an ObjectId. */
export const GENERATED_ID_BYTES = 1 + 4 + 12;

/** BSONDepth's default maxBSONDepth: the nesting MongoDB accepts at all. */
export const MAX_BSON_DEPTH = 200;
/** The nesting of a stored document: top-level fields are at level 1; an empty object or array adds none. */
export const MAX_STORED_DEPTH = MAX_BSON_DEPTH - 20;
/**
 * The smallest BSON with a field at level MAX_STORED_DEPTH + 1: the top document (5 bytes), 7 bytes a
 * level (type, an empty name, an embedded document's length and end) and a 2-byte null. A document
 * smaller than this cannot be too deep, so it is not walked.
 */
const SMALLEST_TOO_DEEP = 5 + 7 * MAX_STORED_DEPTH + 2;

/** Where a stored document came from, which decides MongoDB's error when it is too large or deep. */
export type WriteOrigin = 'insert' | 'update' | 'upsert';

export function bsonSize(doc: Document): number {
  return BSON.calculateObjectSize(doc);
}

/**
 * Refuses a document to be stored that is over maxBsonObjectSize or nested deeper than MAX_STORED_DEPTH
 * (size first, as MongoDB). `bound`, when given, is an upper bound on its size the caller already knows
 * (the request it came in): the exact size is only computed when that bound does not prove the document
 * small, and a document too small to be too deep is not walked. `prior`, when given, is the version
 * `doc` replaces: if it passed this check, the depth walk skips every top-level value the two share
 * (the very same object or primitive: an update copies only what it changes, and stored documents are
 * never changed in place), so a job's claim walks its few changed fields, not the whole job.
 */
export function checkStorable(doc: Document, origin: WriteOrigin, bound?: number, prior?: Document): void {
  let size = bound ?? MAX_BSON_OBJECT_SIZE + 1;
  if (size > MAX_BSON_OBJECT_SIZE) {
    size = bsonSize(doc);
    if (size > MAX_BSON_OBJECT_SIZE) throw tooLarge(size, origin);
  }
  // A prior version that passed this check vouches for the top-level values the new one shares with it.
  const checked = prior !== undefined && storedSizeBound(prior) !== undefined ? prior : undefined;
  if (size >= SMALLEST_TOO_DEEP && tooDeep(doc, checked))
    throw new CommandError(
      'Overflow',
      origin === 'insert'
        ? `cannot insert document because it exceeds ${MAX_STORED_DEPTH} levels of nesting`
        : `Document exceeds maximum nesting depth of ${MAX_STORED_DEPTH}`,
    );
  Object.defineProperty(doc, SIZE_BOUND, { value: size, writable: true, configurable: true });
}

/**
 * Where a document checked for storage keeps an upper bound on its BSON size, so that an update whose
 * growth is bounded (see applyUpdateReporting) proves its result small without measuring it. Stored
 * documents are never changed in place (an update stores a new object), so a bound stays true.
 * A property of the document, not a WeakMap entry: every stored version of every document gets one,
 * and a WeakMap's entries made the garbage collector's scavenges dear (about 2 µs a version in a
 * micro-benchmark). Keyed by a symbol and not enumerable, it is invisible to everything that reads a
 * document (Object.keys, for...in, spreads, BSON, comparisons), so no copy of a document carries it.
 */
const SIZE_BOUND = Symbol('jobd.embedded.sizeBound');

/** The size bound recorded when `doc` was checked for storage, if it was. */
export function storedSizeBound(doc: Document): number | undefined {
  return (doc as { [SIZE_BOUND]?: number })[SIZE_BOUND];
}

function tooLarge(size: number, origin: WriteOrigin): CommandError {
  switch (origin) {
    case 'insert':
      return new CommandError(
        'BadValue',
        `object to insert too large. size in bytes: ${size}, max size: ${MAX_BSON_OBJECT_SIZE}`,
      );
    case 'update':
      return new CommandError(
        'Location17419',
        `Resulting document after update is larger than ${MAX_BSON_OBJECT_SIZE}`,
      );
    case 'upsert':
      return new CommandError('Location17420', `Document to upsert is larger than ${MAX_BSON_OBJECT_SIZE}`);
  }
}

/**
 * Whether a field of `doc` lies deeper than MAX_STORED_DEPTH. The walk recurses at most
 * MAX_STORED_DEPTH + 1 levels whatever the document's nesting, so a document nested far too deep is
 * measured rather than overflowing the stack. (MongoDB's update path counts an `_id` object's fields
 * one level higher; here every path counts as an insert does, refusing, never accepting, what MongoDB
 * would not store.)
 */
function tooDeep(doc: Document, checked?: Document): boolean {
  if (checked) {
    for (const k in doc) {
      const v = doc[k] as unknown;
      // Shared with a version already checked: at the same level there, so within the limit here.
      if (v !== checked[k] && childTooDeep(v, 1)) return true;
    }
    return false;
  }
  for (const k in doc) if (childTooDeep(doc[k], 1)) return true;
  return false;
}

/**
 * Whether a value at nesting `level` is past MAX_STORED_DEPTH or holds one that is. Plain objects and
 * arrays (nearly every container) are walked in place, without copying out their values.
 */
function childTooDeep(value: unknown, level: number): boolean {
  if (level > MAX_STORED_DEPTH) return true;
  if (value === null || typeof value !== 'object') return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (childTooDeep(value[i], level + 1)) return true;
    return false;
  }
  if (isPlainObject(value)) {
    for (const k in value) if (childTooDeep(value[k], level + 1)) return true;
    return false;
  }
  // A date, an ObjectId or another BSON value (the common case here) holds nothing to walk.
  if (value instanceof Date) return false;
  for (const child of childrenOf(value)) if (childTooDeep(child, level + 1)) return true;
  return false;
}

const NO_CHILDREN: readonly unknown[] = [];

/** The values an object or array holds in BSON (a DBRef is an object); none for any other value. */
function childrenOf(v: unknown): readonly unknown[] {
  if (Array.isArray(v)) return v;
  if (isPlainObject(v)) return Object.values(v);
  if (v instanceof Map) return [...(v as Map<unknown, unknown>).values()];
  const ref = v as { _bsontype?: string; collection?: string; oid?: unknown; fields?: Document };
  if (ref?._bsontype === 'DBRef') return [ref.collection, ref.oid, ...Object.values(ref.fields ?? {})];
  return NO_CHILDREN;
}

/** MongoDB's BSONObjectTooLarge for an object over the internal limit, naming its first element. */
export function objectTooLarge(size: number, doc: Document, context?: string): CommandError {
  const first = Object.keys(doc)[0];
  const firstElement = first === undefined ? 'EOO' : `${first}: ${describeValue(doc[first])}`;
  const message =
    `BSONObj size: ${size} (0x${size.toString(16).toUpperCase()}) is invalid. ` +
    `Size must be between 0 and ${MAX_INTERNAL_BSON_SIZE}(16MB) First element: ${firstElement}`;
  return new CommandError('BSONObjectTooLarge', context ? `${context} :: caused by :: ${message}` : message);
}

/** Refuses an object the server built (an aggregation result, a reply) that is over the internal limit. */
export function checkInternalSize(doc: Document, context?: string): void {
  const size = bsonSize(doc);
  if (size > MAX_INTERNAL_BSON_SIZE) throw objectTooLarge(size, doc, context);
}

/** A short rendering of a value for an error message; never the whole of a large value. */
function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (v instanceof Date) return `new Date(${v.getTime()})`;
  if (Array.isArray(v)) return `[ ... ${v.length} elements ]`;
  const tagged = (v as { _bsontype?: string })._bsontype;
  if (tagged) return `${tagged}(...)`;
  return '{ ... }';
}
