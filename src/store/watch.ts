import type { ChangeStream, Collection, Document } from 'mongodb';
import type { JobId } from '../types.js';
import type { Store } from './types.js';

export interface Watcher {
  close(): Promise<void>;
}

export interface WatchHandlers<T> {
  onChange(info: T): void;
  /** unsupported: the server offers no change streams (standalone, old server); fall back to polling. */
  onError(err: unknown, unsupported: boolean): void;
  /**
   * The stream is established on the server: every change from now on raises onChange. Changes made
   * between opening and this moment raise nothing, so a caller that must not miss work looks once here.
   */
  onReady?(): void;
}

const UNSUPPORTED_CODES = new Set([40573, 59, 115, 20, 136, 40324]);

/** True when an error says change streams are not available on this server at all. */
export function isChangeStreamUnsupported(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  if (typeof e?.code === 'number' && UNSUPPORTED_CODES.has(e.code)) return true;
  return /replica set|not supported|not implemented|unrecognized pipeline stage|\$changeStream/i.test(
    String(e?.message ?? ''),
  );
}

/**
 * How long a stream's getMore waits on the server for a change before it answers an empty batch. A
 * change ends the wait at once (the server answers as soon as one arrives), so this bounds only the
 * quiet round trips: at the server's default of 1 s a daemon's three streams (claimable jobs, dataset
 * work, queues) sent three getMores a second between changes, ~7 CPU-ms a second in an idle daemon.
 */
export const WATCH_AWAIT_MS = 10_000;

/**
 * WATCH_AWAIT_MS, or less under a socketTimeoutMS set in the connection string: a getMore still
 * waiting when the socket times out would be cut as a network error (and the stream resumed).
 */
export function watchAwaitMs(store: Store): number {
  const socketTimeout = store.client.options.socketTimeoutMS ?? 0;
  if (!(socketTimeout > 0)) return WATCH_AWAIT_MS;
  return Math.min(WATCH_AWAIT_MS, Math.max(1_000, Math.floor(socketTimeout / 2)));
}

/**
 * A change stream on one collection of `store`, its end reported once; the jobs watchers and the
 * queues one share it. `map` turns a change into what onChange gets; `undefined` skips the change
 * (null is a value: watchers that only wake a reader pass null).
 */
export function watchCollection<T>(
  store: Store,
  coll: Collection<Document>,
  pipeline: Document[],
  map: (change: Document) => T | undefined,
  h: WatchHandlers<T>,
): Watcher {
  let stream: ChangeStream | null = coll.watch(pipeline, { maxAwaitTimeMS: watchAwaitMs(store) });
  // The first resume token arrives with the reply to the stream's opening aggregate.
  stream.once('resumeTokenChanged', () => h.onReady?.());
  stream.on('change', (change: Document) => {
    const info = map(change);
    if (info !== undefined) h.onChange(info);
  });
  // Each stream's end is reported once, whether it comes as an error, as a close (an invalidate after
  // the collection was dropped, or the driver giving up on resuming), or as both.
  const ended = (err: unknown) => {
    const s = stream;
    if (s === null) return;
    stream = null;
    void s.close().catch(() => {});
    h.onError(err, isChangeStreamUnsupported(err));
  };
  stream.on('error', ended);
  stream.on('close', () => ended(new Error('change stream ended by the server')));
  return {
    async close() {
      const s = stream;
      stream = null;
      await s?.close().catch(() => {});
    },
  };
}

/**
 * Watch for jobs becoming claimable: inserts, and updates whose new state is queued or retrying.
 * onChange receives the job's runAt where the event carries it (a retrying job is due later).
 * The caller keeps polling as a safety net: no event fires when a retrying job's runAt arrives.
 */
export function watchClaimable(store: Store, h: WatchHandlers<{ runAt: Date | null }>): Watcher {
  const pipeline = [
    {
      $match: {
        $or: [
          { operationType: 'insert', 'fullDocument.state': { $in: ['queued', 'retrying'] } },
          {
            operationType: 'update',
            'updateDescription.updatedFields.state': { $in: ['queued', 'retrying'] },
          },
          { operationType: 'replace', 'fullDocument.state': { $in: ['queued', 'retrying'] } },
        ],
      },
    },
    {
      $project: {
        operationType: 1,
        'fullDocument.runAt': 1,
        'updateDescription.updatedFields.runAt': 1,
      },
    },
  ];
  return watchCollection(
    store,
    store.jobs as unknown as Collection<Document>,
    pipeline,
    (c) => {
      const runAt = (c.fullDocument?.runAt ?? c.updateDescription?.updatedFields?.runAt) as unknown;
      return { runAt: runAt instanceof Date ? runAt : null };
    },
    h,
  );
}

/** Watch one job's changes (any update, replace or delete). */
export function watchJob(store: Store, id: JobId, h: WatchHandlers<{ state: string | null }>): Watcher {
  const pipeline = [
    { $match: { 'documentKey._id': id } },
    { $project: { operationType: 1, 'updateDescription.updatedFields.state': 1, 'fullDocument.state': 1 } },
  ];
  return watchCollection(
    store,
    store.jobs as unknown as Collection<Document>,
    pipeline,
    (c) => ({
      state: (c.updateDescription?.updatedFields?.state ?? c.fullDocument?.state ?? null) as string | null,
    }),
    h,
  );
}

/** Watch every change to jobs (the caller re-reads what it shows: `jobctl watch`). */
export function watchJobs(store: Store, h: WatchHandlers<null>): Watcher {
  return watchCollection(
    store,
    store.jobs as unknown as Collection<Document>,
    [{ $project: { operationType: 1 } }],
    () => null,
    h,
  );
}
