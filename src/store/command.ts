/**
 * Helpers for writes sent as documented database commands (insert, update) instead of through the
 * bulk API, on the hot path where a batch is known to be small.
 */
import {
  MongoNotConnectedError,
  MongoServerSelectionError,
  MongoTopologyClosedError,
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
