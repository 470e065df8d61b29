/**
 * MongoDB's size limits, advertised in hello and enforced from these same constants, and the errors
 * MongoDB (7.0) gives when they are passed:
 *   - a stored document is at most maxBsonObjectSize (16 MiB) of BSON; an insert over it is refused with
 *     BadValue "object to insert too large", an update whose result is over it with 17419, an upsert
 *     with 17420;
 *   - any other BSON object the server reads or builds (a command, an aggregation result, a reply) may
 *     be 16 KiB larger, the allowance for a command's own fields around a full-size document; past that
 *     it is refused with BSONObjectTooLarge (10334);
 *   - a message is at most maxMessageSizeBytes; a larger one closes the connection;
 *   - a write command carries at most maxWriteBatchSize statements (InvalidLength otherwise);
 *   - a cursor batch holds at most 16 MiB of documents, but always at least one.
 */
import { BSON, type Document } from 'bson';
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

/** Where a stored document came from, which decides MongoDB's error when it is too large. */
export type WriteOrigin = 'insert' | 'update' | 'upsert';

export function bsonSize(doc: Document): number {
  return BSON.calculateObjectSize(doc);
}

/**
 * Refuses a document to be stored that is over maxBsonObjectSize. `bound`, when given, is an upper bound
 * on its size the caller already knows (the request it came in): the exact size is only computed when
 * that bound does not prove the document small.
 */
export function checkStoredSize(doc: Document, origin: WriteOrigin, bound?: number): void {
  if (bound !== undefined && bound <= MAX_BSON_OBJECT_SIZE) return;
  const size = bsonSize(doc);
  if (size <= MAX_BSON_OBJECT_SIZE) return;
  switch (origin) {
    case 'insert':
      throw new CommandError(
        'BadValue',
        `object to insert too large. size in bytes: ${size}, max size: ${MAX_BSON_OBJECT_SIZE}`,
      );
    case 'update':
      throw new CommandError(
        'Location17419',
        `Resulting document after update is larger than ${MAX_BSON_OBJECT_SIZE}`,
      );
    case 'upsert':
      throw new CommandError('Location17420', `Document to upsert is larger than ${MAX_BSON_OBJECT_SIZE}`);
  }
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
