/**
 * Waiting on a state, with a bounded deadline: re-check `probe` until it returns something other than
 * undefined/false, or throw with the last observation. Used for database states that no event reports
 * to the test process (a job's state, a count), never as a stand-in for a sleep.
 *
 *   const doc = await waitUntil(() => jobs.findOne({ _id, state: 'completed' }).then((d) => d ?? undefined),
 *                               { what: `job ${_id} completed` });
 */
import type { Collection, Document, Filter } from 'mongodb';

export interface WaitOptions {
  /** Give up after this long. Default 90 s: a starved machine (CI on 2 cores, other work beside it) is normal. */
  timeoutMs?: number;
  /** Between checks. Default 50 ms. */
  intervalMs?: number;
  /** Named in the error when the deadline passes. */
  what?: string;
}

export class WaitTimeout extends Error {
  constructor(what: string, timeoutMs: number, last: unknown) {
    super(`timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${describe(last)}`);
    this.name = 'WaitTimeout';
  }
}

function describe(v: unknown): string {
  try {
    const s = JSON.stringify(v);
    return s === undefined ? String(v) : s.length > 500 ? `${s.slice(0, 500)}...` : s;
  } catch {
    return String(v);
  }
}

/**
 * Resolves with the first value of `probe` that is neither undefined nor false. A probe that throws
 * is retried (e.g. a database that is restarting); the last error is reported at the deadline.
 */
export async function waitUntil<T>(
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  opts: WaitOptions = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 90_000;
  const intervalMs = opts.intervalMs ?? 50;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
      last = v;
    } catch (err) {
      last = err instanceof Error ? `${err.name}: ${err.message}` : err;
    }
    if (Date.now() >= deadline) throw new WaitTimeout(opts.what ?? 'a condition', timeoutMs, last);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Waits until `countDocuments(filter)` satisfies `ok` (default: equals `expected`); returns the count. */
export async function waitForCount<T extends Document>(
  coll: Collection<T>,
  filter: Filter<T>,
  expected: number,
  opts: WaitOptions = {},
): Promise<number> {
  let last = -1;
  try {
    return await waitUntil(
      async () => {
        last = await coll.countDocuments(filter);
        return last === expected ? last : undefined;
      },
      {
        intervalMs: 100,
        ...opts,
        what: opts.what ?? `${expected} documents in ${coll.collectionName} matching ${describe(filter)}`,
      },
    );
  } catch (err) {
    throw new Error(`${(err as Error).message} (count was ${last})`, { cause: err });
  }
}

/** Waits until a document matches `filter` and returns it. */
export async function waitForDoc<T extends Document>(
  coll: Collection<T>,
  filter: Filter<T>,
  opts: WaitOptions = {},
) {
  return waitUntil(async () => (await coll.findOne(filter)) ?? undefined, {
    ...opts,
    what: opts.what ?? `a document in ${coll.collectionName} matching ${describe(filter)}`,
  });
}
