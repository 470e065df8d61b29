import { randomBytes } from 'node:crypto';
import type { Filter } from 'mongodb';
import { JobdError } from '../errors.js';
import { CLAIMABLE_STATES, type JobDoc, type JobEventDoc, type JobId, type JobState } from '../types.js';
import { sendFind } from './command.js';
import { appendEvents, event, nextSeq } from './events.js';
import { stripInternal } from './enqueue.js';
import type { Store, StoredJob } from './types.js';

export interface ClaimOptions {
  /** Worker id; becomes lease.owner. */
  owner: string;
  leaseMs: number;
  now: Date;
  /**
   * The job types this worker takes now: those it can run, minus those at their own concurrency
   * limit. Jobs of other types stay where they are, for a daemon that runs them.
   */
  types: readonly string[];
  /**
   * Claim events that could not be written. The claim itself stands (the job document is the truth),
   * so the claimed jobs are returned anyway; the caller may retry these events later. Without this
   * hook they are dropped.
   */
  onUnwrittenEvents?: (events: JobEventDoc[], err: unknown) => void;
  /**
   * Takes the claim events to write them with the caller's next write (the worker's outcome writer
   * joins them to its next insert of events) instead of an insert of their own, which the claim then
   * does not wait for. The job document is the truth meanwhile; a reader of the history treats a young
   * gap as being written (docs/state-machine.md, History).
   */
  eventSink?: (events: JobEventDoc[]) => void;
}

/**
 * A claim whose write failed without a reply: it may or may not have landed. The claimed jobs, if any,
 * carry `token`; recoverClaim() finds them once the database answers again.
 */
export interface PendingClaim {
  token: string;
  owner: string;
  /** Candidate ids (a batch claim); null for claimNext, whose candidate is unknown. */
  ids: JobId[] | null;
  /** State each candidate was claimed from, for its event. */
  from: Record<JobId, JobState>;
  at: Date;
}

export class AmbiguousClaimError extends JobdError {
  constructor(
    readonly pending: PendingClaim,
    cause: unknown,
  ) {
    super(
      `claim ${pending.token} may or may not have landed: ${(cause as Error)?.message ?? String(cause)}`,
      'JOBD_AMBIGUOUS_CLAIM',
      {
        cause,
      },
    );
    this.name = 'AmbiguousClaimError';
  }
}

export interface ClaimBatchOptions extends ClaimOptions {
  limit: number;
  /** Free slots left per limited type; candidates beyond them are skipped this round. */
  typeSlots?: Record<string, number>;
  /** Free slots left per limited queue (a group of types); candidates beyond them are skipped. */
  queueSlots?: { queueOf: Readonly<Record<string, string>>; free: Readonly<Record<string, number>> };
  /**
   * Asked for each candidate left, in claim order, whether it may be claimed (the worker's free
   * resources cover its type's needs after those admitted before it); a candidate refused is skipped.
   */
  admit?: (type: string) => boolean;
}

/**
 * The claim order: highest priority (1) first, then earliest runAt, then oldest id. Served by the
 * 'claim' index {state, type, priority, runAt, _id}: with both state and type given as $in, the
 * server scans one range per (state, type) pair and merges them in this order (SORT_MERGE).
 */
export const CLAIM_SORT = { priority: 1, runAt: 1, _id: 1 } as const;

export function newLeaseToken(): string {
  return randomBytes(12).toString('hex');
}

/** What a worker that runs `types` may claim at `now`. */
export function claimableFilter(now: Date, types: readonly string[]): Filter<StoredJob> {
  return { state: { $in: [...CLAIMABLE_STATES] }, type: { $in: [...types] }, runAt: { $lte: now } };
}

function claimSet(owner: string, token: string, leaseMs: number, now: Date) {
  return {
    state: 'running' as const,
    lease: { owner, token, expiresAt: new Date(now.getTime() + leaseMs) },
    startedAt: now,
    updatedAt: now,
    progress: null,
    // A new claim: settlements of earlier claims must no longer read back as landed.
    settledToken: null,
  };
}

/**
 * Claim one job atomically: one findOneAndUpdate. Attempts are counted here, at claim time, so an
 * attempt that crashes the worker still counts.
 */
export async function claimNext(store: Store, opts: ClaimOptions): Promise<JobDoc | null> {
  if (opts.types.length === 0) return null;
  const token = newLeaseToken();
  let doc: StoredJob | null;
  try {
    doc = await store.jobs.findOneAndUpdate(
      claimableFilter(opts.now, opts.types),
      { $set: claimSet(opts.owner, token, opts.leaseMs, opts.now), $inc: { attempts: 1, seq: 1 } },
      { sort: CLAIM_SORT, returnDocument: 'before' },
    );
  } catch (err) {
    throw new AmbiguousClaimError({ token, owner: opts.owner, ids: null, from: {}, at: opts.now }, err);
  }
  if (!doc) return null;
  const claimed: StoredJob = {
    ...doc,
    ...claimSet(opts.owner, token, opts.leaseMs, opts.now),
    attempts: doc.attempts + 1,
    seq: nextSeq(doc),
  };
  await writeClaimEvents(store, [claimed], { [doc._id]: doc.state }, opts.owner, opts.now, opts);
  return stripInternal(claimed);
}

/**
 * Claim up to `limit` jobs (MongoDB has no UPDATE ... LIMIT):
 * 1. find candidates in claim order;
 * 2. updateMany those ids, guarded on still being claimable and due, stamping a fresh batch token;
 * 3. only when fewer were modified than chosen (another worker took some in between), read back the
 *    documents carrying that token. Otherwise the claimed documents are the candidates with the
 *    update applied, so an uncontended batch costs two commands (plus one for its events).
 *
 * Every job of the batch shares the batch token. Fencing still holds: the token is fresh per claim
 * and every later write addresses {_id, state: 'running', lease.token}, so the pair (job, token) names
 * exactly one claim of one job; a re-claim of that job after rescue carries a different token.
 */
export async function claimBatch(store: Store, opts: ClaimBatchOptions): Promise<JobDoc[]> {
  if (opts.limit <= 0 || opts.types.length === 0) return [];
  const filter = claimableFilter(opts.now, opts.types);
  const candidates = await claimCandidates(store, filter, opts.limit);
  let chosen = candidates;
  if (opts.typeSlots || opts.queueSlots) {
    const left = { ...opts.typeSlots };
    const queueLeft = { ...opts.queueSlots?.free };
    chosen = candidates.filter((c) => {
      const slots = left[c.type];
      const queue = opts.queueSlots?.queueOf[c.type] ?? c.type;
      const qSlots = queueLeft[queue];
      if ((slots !== undefined && slots <= 0) || (qSlots !== undefined && qSlots <= 0)) return false;
      if (slots !== undefined) left[c.type] = slots - 1;
      if (qSlots !== undefined) queueLeft[queue] = qSlots - 1;
      return true;
    });
  }
  if (opts.admit) chosen = chosen.filter((c) => opts.admit!(c.type));
  if (chosen.length === 0) return [];
  const ids = chosen.map((c) => c._id);
  const token = newLeaseToken();
  const set = claimSet(opts.owner, token, opts.leaseMs, opts.now);
  // Each candidate is claimed only in the version read (its transition count): between the find and
  // this update another worker may have claimed it and a rescue made it claimable again, and then the
  // candidate as read (its seq, attempts, state) is no longer the job. Such a job is left to the next round.
  const from: Record<JobId, JobState> = {};
  for (const c of chosen) from[c._id] = c.state;
  let res;
  try {
    res = await store.jobs.updateMany({ ...filter, ...asReadGuard(chosen, ids) } as Filter<StoredJob>, {
      $set: set,
      $inc: { attempts: 1, seq: 1 },
    });
  } catch (err) {
    // Multi-document updates are not retryable writes: a lost reply leaves the outcome unknown.
    throw new AmbiguousClaimError({ token, owner: opts.owner, ids, from, at: opts.now }, err);
  }
  if (res.modifiedCount === 0) return [];
  let docs: JobDoc[];
  if (res.modifiedCount === chosen.length) {
    docs = chosen.map((c) => claimedAsRead(c, set));
  } else {
    // Contended: read back by _id (served by the _id index) and token (only what this claim won).
    docs = (
      await store.jobs
        .find({ _id: { $in: ids }, state: 'running', 'lease.token': token }, { sort: CLAIM_SORT })
        .toArray()
    ).map(stripInternal);
  }
  await writeClaimEvents(store, docs, from, opts.owner, opts.now, opts);
  return docs;
}

/**
 * The first `limit` claimable jobs in claim order, read as one `find` command that closes its cursor
 * with its one batch (see sendFind); through a cursor when that command got no clean answer.
 */
async function claimCandidates(store: Store, filter: Filter<StoredJob>, limit: number): Promise<StoredJob[]> {
  const cmd = { find: store.jobs.collectionName, filter, sort: CLAIM_SORT, limit, singleBatch: true };
  return (
    (await sendFind(store, store.jobs, cmd)) ??
    (await store.jobs.find(filter, { sort: CLAIM_SORT, limit }).toArray())
  );
}

/**
 * Matches each candidate only in the version read: {_id, seq} as read, for every candidate. Candidates
 * read with the same seq (fresh jobs all carry 1) share one branch, {_id: {$in: those}, seq}, the same
 * predicate as one {_id, seq} pair per candidate, with one branch for the server to decode and evaluate
 * instead of one per job; when all share it, no $or at all.
 */
function asReadGuard(chosen: StoredJob[], ids: JobId[]): Filter<StoredJob> {
  const bySeq = new Map<number | undefined, JobId[]>();
  for (const c of chosen) {
    const g = bySeq.get(c.seq);
    if (g) g.push(c._id);
    else bySeq.set(c.seq, [c._id]);
  }
  // A job of an older version carries no seq: it is matched only while it still has none.
  const seqOf = (seq: number | undefined) => seq ?? { $exists: false };
  if (bySeq.size === 1) {
    const [seq] = bySeq.keys();
    return { _id: { $in: ids }, seq: seqOf(seq) } as Filter<StoredJob>;
  }
  const or = [...bySeq].map(([seq, g]) => ({ _id: { $in: g }, seq: seqOf(seq) }));
  return { _id: { $in: ids }, $or: or } as Filter<StoredJob>;
}

/**
 * The job as the claim's update made it, from the candidate as read, without the internal fields
 * (what stripInternal of the updated document gives, fields in the same order): built in one copy,
 * where a spread and then stripInternal's rest copy cost several times as much per job. A candidate
 * without internal fields (most: fresh jobs carry none) is updated in place instead: the candidates
 * are this claim's own copies, read for it alone, and the same fields come out in the same order.
 */
function claimedAsRead(c: StoredJob, set: ReturnType<typeof claimSet>): JobDoc {
  if (!('dedupeActive' in c) && !('settledToken' in c)) {
    const job = c as unknown as Record<string, unknown>;
    const attempts = c.attempts + 1;
    const seq = nextSeq(c);
    for (const k in set) {
      if (k !== 'settledToken') job[k] = set[k as keyof typeof set];
    }
    job.lease = { ...set.lease };
    job.attempts = attempts;
    job.seq = seq;
    return job as unknown as JobDoc;
  }
  const out: Record<string, unknown> = {};
  for (const k in c) {
    if (k !== 'dedupeActive' && k !== 'settledToken') out[k] = c[k as keyof StoredJob];
  }
  for (const k in set) {
    if (k !== 'dedupeActive' && k !== 'settledToken') out[k] = set[k as keyof typeof set];
  }
  out.lease = { ...set.lease };
  out.attempts = c.attempts + 1;
  out.seq = nextSeq(c);
  return out as unknown as JobDoc;
}

/**
 * Settle an ambiguous claim: the jobs that carry its token are this worker's (nobody else holds that
 * token, and a rescue or cancel would have replaced or removed it). Their events are written now.
 */
export async function recoverClaim(
  store: Store,
  pending: PendingClaim,
  opts: Pick<ClaimOptions, 'onUnwrittenEvents' | 'eventSink'> = {},
): Promise<JobDoc[]> {
  const filter: Filter<StoredJob> = { state: 'running', 'lease.token': pending.token };
  if (pending.ids) filter._id = { $in: pending.ids };
  const docs = await store.jobs.find(filter, { sort: CLAIM_SORT }).toArray();
  await writeClaimEvents(store, docs, pending.from, pending.owner, pending.at, opts);
  return docs.map(stripInternal);
}

async function writeClaimEvents(
  store: Store,
  docs: JobDoc[],
  from: Record<JobId, JobState>,
  owner: string,
  now: Date,
  opts: Pick<ClaimOptions, 'onUnwrittenEvents' | 'eventSink'>,
): Promise<void> {
  if (docs.length === 0) return;
  const events = docs.map((d) =>
    event(d._id, from[d._id] ?? null, 'running', now, d.attempts, owner, 'claimed', d.seq),
  );
  if (opts.eventSink) {
    opts.eventSink(events);
    return;
  }
  try {
    await appendEvents(store, events);
  } catch (err) {
    opts.onUnwrittenEvents?.(events, err);
  }
}
