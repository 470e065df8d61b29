import { MongoBulkWriteError, ObjectId, type Document, type OptionalUnlessRequiredId } from 'mongodb';
import { sendWrite } from './command.js';
import type { JobDoc, JobEventDoc, JobId, JobState } from '../types.js';
import type { Store } from './types.js';

/** A numbered event's id: whoever writes it (its writer, a retry, the rescuer), it is stored once. */
export function eventId(jobId: JobId, seq: number): string {
  return `${jobId}:${seq}`;
}

export function event(
  jobId: JobId,
  from: JobState | null,
  to: JobState,
  at: Date,
  attempt: number,
  worker?: string | null,
  message?: string | null,
  /** The job's transition count after this transition; undefined for jobs of older versions. */
  seq?: number,
): JobEventDoc {
  // Two per job on the hot path: built as literals, not spread (same fields, same order).
  const w = worker ?? null;
  const m = message ?? null;
  if (seq === undefined) return { jobId, from, to, at, attempt, worker: w, message: m };
  return { _id: eventId(jobId, seq), seq, jobId, from, to, at, attempt, worker: w, message: m };
}

/** The next transition's number for a job as read (old jobs carry none: they start at 1). */
export function nextSeq(job: { seq?: number }): number {
  return (job.seq ?? 0) + 1;
}

/**
 * Append transition events in one unordered insert. The job document is the truth; events are its
 * history, written right after the transition. If the history write fails the transition stands.
 */
export async function appendEvents(store: Store, events: JobEventDoc[]): Promise<void> {
  if (events.length === 0) return;
  // Every event carries its id before the first try (numbered ones by their number, others an
  // ObjectId), so a repeat of the same array meets the copies that did land as duplicate keys.
  for (const e of events) if (e._id === undefined) e._id = new ObjectId();
  const rest = fitsOneCommand(events) ? await insertCommand(store, events) : events;
  if (rest.length === 0) return;
  try {
    await store.events.insertMany(rest as OptionalUnlessRequiredId<JobEventDoc>[], { ordered: false });
  } catch (err) {
    if (!onlyDuplicateKeys(err)) throw err;
  }
}

/** Far below the 16 MB a command document may hold: the strings are the only fields of any size. */
const FAST_INSERT_BYTES = 4 * 1024 * 1024;

function fitsOneCommand(events: JobEventDoc[]): boolean {
  if (events.length > 1000) return false;
  let chars = 0;
  for (const e of events) {
    chars += 2 * e.jobId.length + (e.message?.length ?? 0) + (e.worker?.length ?? 0) + 64;
  }
  // A UTF-16 unit is at most 3 bytes of UTF-8.
  return chars * 3 + events.length * 256 < FAST_INSERT_BYTES;
}

/**
 * The documented insert command on its own, without the bulk API (which measures every document
 * again to split batches and builds a result object per id: a few % of the daemon's CPU per job).
 * Returns the events still to write through insertMany, whose retry and errors then decide as they
 * always did: none when all are stored (a duplicate key means it already was); those the server
 * refused for another reason; all of them after an error or a write concern error (their ids make
 * the repeat harmless). Errors no repeat can cure now (no server to send to) are thrown, as
 * insertMany would throw them.
 */
async function insertCommand(store: Store, events: JobEventDoc[]): Promise<JobEventDoc[]> {
  const cmd: Document = { insert: store.events.collectionName, documents: events, ordered: false };
  const reply = await sendWrite(store, store.events, cmd);
  if (!reply || reply.writeConcernError) return events;
  const errors = reply.writeErrors as { index?: number; code?: number }[] | undefined;
  if (!errors?.length) return reply.n === events.length ? [] : events;
  const refused: JobEventDoc[] = [];
  for (const e of errors) {
    if (e.code === 11000) continue;
    const ev = typeof e.index === 'number' ? events[e.index] : undefined;
    if (!ev) return events;
    refused.push(ev);
  }
  return refused;
}

/** True when every write error of a bulk insert is a duplicate key: those documents are already stored. */
function onlyDuplicateKeys(err: unknown): boolean {
  if (!(err instanceof MongoBulkWriteError)) return false;
  const errors = Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors];
  return errors.length > 0 && errors.every((e) => e.code === 11000);
}

/** What the history of a job is checked against. */
export type JobForHistory = Pick<JobDoc, '_id' | 'state' | 'attempts' | 'createdAt' | 'updatedAt' | 'seq'> & {
  lease?: JobDoc['lease'];
};

export const RECOVERED_BY_RESCUER =
  'event written by the rescuer; the original writer died before recording it';
export const NOT_RECORDED =
  'not recorded: the process that made this transition stopped before writing its event; shown from the job document';

/**
 * The numbered transitions of `job` (1..job.seq) that `events` lacks, as events marked recovered:
 * a single missing transition is rebuilt from its neighbours and the job document; a run of several
 * becomes one marker naming how many. `events` is the job's history in order. Gaps whose following
 * transition is younger than graceMs are left out: their writer may still be recording them.
 */
export function missingEvents(
  job: JobForHistory,
  events: JobEventDoc[],
  opts: { message: string; now: Date; graceMs: number },
): JobEventDoc[] {
  const last = job.seq ?? 0;
  const have = new Map<number, JobEventDoc>();
  for (const e of events) if (e.seq !== undefined) have.set(e.seq, e);
  // A job from an older version: its numbering began with the first numbered event.
  const unnumbered = events.filter((e) => e.seq === undefined);
  const first = unnumbered.length > 0 ? Math.min(...have.keys(), last + 1) : 1;
  const young = (at: Date) => opts.now.getTime() - at.getTime() < opts.graceMs;
  const out: JobEventDoc[] = [];
  for (let k = first; k <= last; k++) {
    if (have.has(k)) continue;
    let m = k;
    while (m < last && !have.has(m + 1)) m++;
    const prev = have.get(k - 1) ?? (k === first ? unnumbered[unnumbered.length - 1] : undefined);
    const next = have.get(m + 1);
    const trailing = m === last;
    if (young(trailing ? job.updatedAt : next!.at)) {
      k = m;
      continue;
    }
    const enqueue = k === 1 && unnumbered.length === 0;
    const from = enqueue ? null : (prev?.to ?? null);
    const to = trailing ? job.state : next!.from;
    if (to === null) {
      k = m;
      continue;
    }
    const at = enqueue && m === 1 ? job.createdAt : trailing ? job.updatedAt : (prev?.at ?? job.createdAt);
    const attempt = trailing ? job.attempts : (next?.attempt ?? prev?.attempt ?? 0);
    const worker = trailing && to === 'running' ? (job.lease?.owner ?? null) : null;
    const message = m === k ? opts.message : `${m - k + 1} transitions ${opts.message}`;
    out.push({ ...event(job._id, from, to, at, attempt, worker, message, k), recovered: true });
    k = m;
  }
  return out;
}

/**
 * A job's history, oldest first. Where its numbered history has a gap (a writer stopped between a
 * transition and its event), the gap is shown as a marked event rebuilt from the job document.
 */
export async function eventsOf(
  store: Store,
  jobId: JobId,
  opts: { limit?: number; now?: Date; graceMs?: number } = {},
): Promise<JobEventDoc[]> {
  // The job first: a transition after this read has an event we may or may not see, never a gap.
  const job = await store.jobs.findOne(
    { _id: jobId },
    { projection: { state: 1, attempts: 1, createdAt: 1, updatedAt: 1, seq: 1, lease: 1 } },
  );
  const events = orderHistory(await store.events.find({ jobId }, { sort: { at: 1, _id: 1 } }).toArray());
  const gaps = job
    ? missingEvents(job, events, {
        message: NOT_RECORDED,
        now: opts.now ?? new Date(),
        graceMs: opts.graceMs ?? 10_000,
      })
    : [];
  const all = gaps.length > 0 ? orderHistory([...events, ...gaps]) : events;
  return opts.limit ? all.slice(0, opts.limit) : all;
}

/** Events without a number (older versions) first, in chain order; then the numbered ones by number. */
export function orderHistory(events: JobEventDoc[]): JobEventDoc[] {
  const unnumbered = chainTies(events.filter((e) => e.seq === undefined).sort(byTime));
  const numbered = events.filter((e) => e.seq !== undefined).sort((a, b) => a.seq! - b.seq!);
  return [...unnumbered, ...numbered];
}

function byTime(a: JobEventDoc, b: JobEventDoc): number {
  return a.at.getTime() - b.at.getTime();
}

/**
 * Events written by different processes in the same millisecond tie on `at`, and their ids do not
 * follow time across processes. The history is a chain (each `from` is the previous `to`), so ties
 * are put in chain order.
 */
function chainTies(events: JobEventDoc[]): JobEventDoc[] {
  const out: JobEventDoc[] = [];
  for (let i = 0; i < events.length;) {
    let j = i + 1;
    while (j < events.length && events[j]!.at.getTime() === events[i]!.at.getTime()) j++;
    const tied = events.slice(i, j);
    while (tied.length > 0) {
      const prev = out.length > 0 ? out[out.length - 1]!.to : null;
      const next = tied.findIndex((e) => e.from === prev);
      out.push(tied.splice(Math.max(0, next), 1)[0]!);
    }
    i = j;
  }
  return out;
}
