/**
 * A job's log as any host sees it: the chunks its daemon stored in the database while it ran
 * (src/worker/logShipper.ts), or, for a job that has none (run before logs were stored, or with
 * worker.logStoreBytes 0), the tail kept on the job document. `jobctl logs` and
 * GET /api/jobs/{id}/logs both read it here.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { NotFoundError } from '../errors.js';
import { logChunksAfter, type LogChunkDoc, type LogCursor, type Store } from '../store/index.js';
import { get } from '../store/queries.js';
import { FINISHED_STATES, type JobId, type JobState } from '../types.js';

export interface JobLog {
  jobId: JobId;
  /** null: the job is gone (deleted) but output of it is still stored. */
  state: JobState | null;
  text: string;
  /** database: the stored log; tail: only the tail kept on the job; none: nothing printed. */
  source: 'database' | 'tail' | 'none';
  /** The stored log was cut at worker.logStoreBytes (it ends with a marker saying so). */
  truncated: boolean;
}

export interface LogPiece {
  text: string;
  source: 'database' | 'tail';
}

const PAGE = 500;
export const FOLLOW_POLL_MS = 250;

async function* chunksFrom(store: Store, id: JobId, after: LogCursor | null): AsyncGenerator<LogChunkDoc> {
  let cursor = after;
  for (;;) {
    const page = await logChunksAfter(store, id, cursor, PAGE);
    for (const c of page) yield c;
    if (page.length < PAGE) return;
    const last = page[page.length - 1]!;
    cursor = { run: last.run, off: last.off };
  }
}

/** The whole log of a job as stored now. NotFoundError when neither the job nor output of it exists. */
export async function readJobLog(store: Store, id: JobId): Promise<JobLog> {
  // The job first: once it reads finished, every chunk of it is stored (they are written before the outcome).
  const job = await get(store, id);
  const parts: string[] = [];
  let truncated = false;
  for await (const c of chunksFrom(store, id, null)) {
    parts.push(c.text);
    truncated ||= c.truncated === true;
  }
  if (!job && parts.length === 0) throw new NotFoundError(`job ${id} not found`);
  const state = job?.state ?? null;
  if (parts.length > 0) return { jobId: id, state, text: parts.join(''), source: 'database', truncated };
  const tail = job?.logTail ?? '';
  return { jobId: id, state, text: tail, source: tail ? 'tail' : 'none', truncated: false };
}

/**
 * A job's log as it grows, until the job is finished (or deleted) and all of it was given. Polls the
 * database every `pollMs` (change streams are not needed: this works on any MongoDB). A job without
 * stored output ends with the tail kept on it. NotFoundError when the job does not exist at the start.
 */
export async function* followJobLog(
  store: Store,
  id: JobId,
  opts: { pollMs?: number; signal?: AbortSignal } = {},
): AsyncGenerator<LogPiece> {
  let cursor: LogCursor | null = null;
  let stored = false;
  let first = true;
  while (!opts.signal?.aborted) {
    const job = await get(store, id);
    let got = 0;
    for await (const c of chunksFrom(store, id, cursor)) {
      cursor = { run: c.run, off: c.off };
      stored = true;
      got++;
      yield { text: c.text, source: 'database' };
    }
    if (first && !job && !stored) throw new NotFoundError(`job ${id} not found`);
    first = false;
    // Read before the chunks: finished then means no chunk was still to come.
    if (got === 0 && (!job || FINISHED_STATES.includes(job.state))) {
      if (!stored && job?.logTail) yield { text: job.logTail, source: 'tail' };
      return;
    }
    if (got === 0) {
      try {
        await delay(opts.pollMs ?? FOLLOW_POLL_MS, undefined, opts.signal ? { signal: opts.signal } : {});
      } catch {
        return;
      }
    }
  }
}
