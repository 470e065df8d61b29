/**
 * Helpers for writes sent as documented database commands (insert, update) instead of through the
 * bulk API, on the hot path where a batch is known to be small.
 */
import {
  Long,
  MongoNotConnectedError,
  MongoServerSelectionError,
  MongoTopologyClosedError,
  type Collection,
  type Document,
  type WriteConcern,
} from 'mongodb';
import type { Store } from './types.js';

/** A collection's write concern as a command's writeConcern field (undefined: the server's default). */
function writeConcernOf(wc: WriteConcern | undefined): Document | undefined {
  if (!wc) return undefined;
  const w: Document = {};
  if (wc.w !== undefined) w.w = wc.w;
  if (wc.journal !== undefined) w.j = wc.journal;
  if (wc.wtimeoutMS !== undefined) w.wtimeout = wc.wtimeoutMS;
  return w;
}

/** Nothing was sent: no server to send to. The bulk API would throw the same, sooner or later. */
function noServer(err: unknown): boolean {
  return (
    err instanceof MongoServerSelectionError ||
    err instanceof MongoNotConnectedError ||
    err instanceof MongoTopologyClosedError
  );
}

/**
 * Sends `cmd` (an insert or update of `coll`) with the collection's write concern. Null when it got no
 * reply (the caller then writes through the bulk API, whose errors and retry decide as before); no
 * server to send to is thrown, as the bulk API would throw it.
 */
export async function sendWrite(
  store: Store,
  coll: { readonly writeConcern?: WriteConcern | undefined },
  cmd: Document,
): Promise<Document | null> {
  const wc = writeConcernOf(coll.writeConcern);
  if (wc) cmd.writeConcern = wc;
  try {
    return await store.db.command(cmd);
  } catch (err) {
    if (noServer(err)) throw err;
    return null;
  }
}

/**
 * Sends `cmd`, a `find` of `coll` whose whole result fits its first batch (it asks for singleBatch),
 * with the collection's read concern and read preference, as a cursor would send them; the batch's
 * documents, decoded once with the reply, without the cursor API's per-call machinery (a cursor
 * object, its session and close wiring, a decode call per document). Null when the caller should read
 * through a cursor instead, whose retry and errors then decide as they always did: the command failed,
 * or the server left a cursor open (it is killed first). No server to send to is thrown, as a cursor
 * would throw it.
 */
export async function sendFind<T extends Document>(
  store: Store,
  coll: Collection<T>,
  cmd: Document,
): Promise<T[] | null> {
  const readConcern = coll.readConcern;
  if (readConcern?.level) cmd.readConcern = { level: readConcern.level };
  let reply: Document;
  try {
    reply = await store.db.command(cmd, { readPreference: coll.readPreference ?? 'primary' });
  } catch (err) {
    if (noServer(err)) throw err;
    return null;
  }
  const cursor = reply.cursor as { id?: number | Long; firstBatch?: T[] } | undefined;
  if (!cursor || !Array.isArray(cursor.firstBatch)) return null;
  const id = cursor.id;
  if (id === 0 || (id instanceof Long && id.isZero())) return cursor.firstBatch;
  await store.db.command({ killCursors: coll.collectionName, cursors: [id] }).catch(() => {});
  return null;
}
