import { MongoBulkWriteError, type OptionalUnlessRequiredId } from 'mongodb';
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
 * Append transition events in one unordered insertMany. The job document is the truth; events are
 * its history, written right after the transition. If the history write fails the transition stands.
 */
export async function appendEvents(store: Store, events: JobEventDoc[]): Promise<void> {
  if (events.length === 0) return;
  // Numbered events carry their id; others get ObjectIds from the driver on the first try, so a retry
  // of the same array after an ambiguous failure meets the copies that did land as duplicate keys.
  try {
    await store.events.insertMany(events as OptionalUnlessRequiredId<JobEventDoc>[], { ordered: false });
  } catch (err) {
    if (!onlyDuplicateKeys(err)) throw err;
  }
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
