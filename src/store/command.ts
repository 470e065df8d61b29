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

/** A collection's write concern as a command's writeConcern field (undefined: the server's default). */
export function writeConcernOf(wc: WriteConcern | undefined): Document | undefined {
  if (!wc) return undefined;
  const w: Document = {};
  if (wc.w !== undefined) w.w = wc.w;
  if (wc.journal !== undefined) w.j = wc.journal;
  if (wc.wtimeoutMS !== undefined) w.wtimeout = wc.wtimeoutMS;
  return w;
}

/** Nothing was sent: no server to send to. The bulk API would throw the same, sooner or later. */
export function noServer(err: unknown): boolean {
  return (
    err instanceof MongoServerSelectionError ||
    err instanceof MongoNotConnectedError ||
    err instanceof MongoTopologyClosedError
  );
}
