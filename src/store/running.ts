/**
 * Writes to running jobs. Every one filters {_id, state: 'running', 'lease.token': token} and
 * reports whether it matched: a worker whose lease was lost (rescued, cancelled) writes nothing.
 * Settling is idempotent per claim: repeating a settlement that already landed (a retry after a
 * network error) reports it as landed, via the settledToken it left; it never writes twice.
 */
import type { AnyBulkWriteOperation, Document, Filter, UpdateFilter } from 'mongodb';
import type {
  ChildFailurePolicy,
  HookError,
  JobDoc,
  JobEventDoc,
  JobId,
  JobResources,
  JobState,
  SerializedError,
} from '../types.js';
import { appendEvents, event, nextSeq } from './events.js';
import { sendWrite } from './command.js';
import type { Store, StoredJob } from './types.js';

export interface HeldLease {
  jobId: JobId;
  token: string;
}

export interface SettleBase extends HeldLease {
  /** The attempt being settled (job.attempts after the claim). */
  attempt: number;
  /** job.seq as claimed: the settlement is transition seq + 1 (undefined only for jobs of old versions). */
  seq: number | undefined;
  resources?: JobResources | null;
  logTail?: string | null;
  /** Lifecycle hooks that threw or timed out during this attempt (kept on the job, bounded). */
  hookErrors?: HookError[];
  /** The job's workflow, for its release after the settle (not written). */
  workflowId?: string | null;
  /**
   * The job had no dependents, workflow or parent when claimed (see noOneToTell): finishing it writes
   * no releasePending and needs no release, as long as no dependent marked it since (the settle's
   * filter checks; a job marked meanwhile is settled the full way and this is cleared).
   */
  noDependents?: boolean;
}

/** `{ noDependents: true }` for a job that has no one to tell when it finishes, else `{}`. */
export function noOneToTell(job: Pick<JobDoc, 'hasDependents' | 'workflowId' | 'parentId'>): {
  noDependents?: true;
} {
  return job.hasDependents || job.workflowId || job.parentId ? {} : { noDependents: true };
}

/** Whether settling `s` finishes its job with no release to follow (nothing to tell). */
export function needsNoRelease(s: Settlement): boolean {
  if (!s.noDependents) return false;
  const to = settlementTarget(s);
  return to === 'completed' || to === 'failed';
}

/** Hook failures kept on a job, newest last. */
export const HOOK_ERROR_HISTORY = 20;

export type Settlement =
  | (SettleBase & { kind: 'complete'; result: unknown })
  /**
   * retryAt null: no further attempt, the job fails for good. failedAt: when the attempt failed
   * (retryAt counts from it); the error records it, whenever the outcome is written.
   */
  | (SettleBase & {
      kind: 'fail';
      error: SerializedError;
      retryAt: Date | null;
      delayMs?: number;
      failedAt?: Date;
    })
  /** Shutdown past grace: back to queued, the attempt given back. */
  | (SettleBase & { kind: 'requeue'; message?: string })
  /** A parent waits for its children: back to waiting, the attempt given back, slot and child freed. */
  | (SettleBase & {
      kind: 'suspend';
      children: JobId[];
      childPolicy: ChildFailurePolicy;
      /** The parent's own dependencies (kept in `upstream`: dependsOn is about to list the children). */
      upstream?: JobId[];
    });

export interface SettleContext {
  owner: string;
  now: Date;
  /** Failed attempts kept in job.errors. */
  errorHistory: number;
}

export interface SettleResult {
  landed: JobId[];
  /** The lease was gone: nothing was written for these. */
  lost: JobId[];
  /**
   * The transitions landed but their history did not (the database failed in between). The caller
   * may append them later with appendEvents; retrying the settlement itself would not rewrite them.
   */
  unwrittenEvents: JobEventDoc[];
}

export function leaseGuard(l: HeldLease): Filter<StoredJob> {
  return { _id: l.jobId, state: 'running', 'lease.token': l.token };
}

export function settlementTarget(s: Settlement): JobState {
  if (s.kind === 'complete') return 'completed';
  if (s.kind === 'requeue') return 'queued';
  if (s.kind === 'suspend') return 'waiting';
  return s.retryAt ? 'retrying' : 'failed';
}

function settleUpdate(s: Settlement, ctx: SettleContext): UpdateFilter<StoredJob> {
  const to = settlementTarget(s);
  const set: Record<string, unknown> = {
    state: to,
    lease: null,
    settledToken: s.token,
    updatedAt: ctx.now,
  };
  if (s.resources !== undefined) set.resources = s.resources;
  if (s.logTail !== undefined) set.logTail = s.logTail;
  const update: UpdateFilter<StoredJob> = { $set: set, $inc: { seq: 1 } };
  if (to === 'completed' || to === 'failed') {
    set.finishedAt = ctx.now;
    // Its dependents (workflow, parent) are told right after; if this process dies first, the sweep does.
    if (!needsNoRelease(s)) set.releasePending = true;
    update.$unset = { dedupeActive: '' };
  }
  if (s.kind === 'complete') {
    set.result = s.result === undefined ? null : s.result;
  } else if (s.kind === 'fail') {
    const err = { ...s.error, at: s.failedAt ?? ctx.now, attempt: s.attempt, worker: ctx.owner };
    set.lastError = err;
    if (s.retryAt) set.runAt = s.retryAt;
    update.$push = { errors: { $each: [err], $slice: -Math.max(1, ctx.errorHistory) } };
  } else if (s.kind === 'suspend') {
    set.waitingFor = 'children';
    set.dependsOn = s.children;
    set.depsLeft = s.children.length;
    // Its children carry a parentId: each one's release tells it.
    set.dependenciesMarked = true;
    set.childPolicy = s.childPolicy;
    if (s.upstream?.length) set.upstream = s.upstream;
    set.releasePending = true;
    update.$inc = { seq: 1, attempts: -1, resumes: 1 };
  } else {
    set.runAt = ctx.now;
    update.$inc = { seq: 1, attempts: -1 };
  }
  if (s.hookErrors?.length) {
    update.$push = {
      ...update.$push,
      hookErrors: { $each: s.hookErrors, $slice: -HOOK_ERROR_HISTORY },
    } as UpdateFilter<StoredJob>['$push'];
  }
  return update;
}

function settleMessage(s: Settlement): string {
  if (!s.hookErrors?.length) return settleText(s);
  const hooks = s.hookErrors
    .map((h) => `; hook ${h.hook} failed: ${h.name}${h.code ? ` (${h.code})` : ''}: ${h.message}`)
    .join('');
  return settleText(s) + hooks;
}

function settleText(s: Settlement): string {
  if (s.kind === 'complete') return 'completed';
  if (s.kind === 'requeue') return s.message ?? 'requeued at shutdown; attempt given back';
  if (s.kind === 'suspend') return `waiting for ${s.children.length} children; attempt given back`;
  const head = `${s.error.name}${s.error.code ? ` (${s.error.code})` : ''}: ${s.error.message}`;
  return s.retryAt ? `${head}; retry at ${s.retryAt.toISOString()}` : head;
}

/**
 * Settle many running jobs with one unordered bulkWrite of guarded updates, then one insertMany of
 * their events. Only when fewer matched than were sent is the outcome of each read back (by the
 * settledToken the guarded update leaves behind). `withEvents`, asked once the settlements landed
 * (never if their write threw), gives events of other jobs' earlier transitions to write in the same
 * insert (a worker's claims); if that insert fails they are among `unwrittenEvents`.
 */
export async function settleManyIfRunning(
  store: Store,
  settlements: Settlement[],
  ctx: SettleContext,
  withEvents?: () => JobEventDoc[],
): Promise<SettleResult> {
  if (settlements.length === 0) return { landed: [], lost: [], unwrittenEvents: [] };
  const landedSet = await writeSettlements(store, settlements, ctx);
  const events: JobEventDoc[] = withEvents ? withEvents() : [];
  for (const s of settlements) {
    if (!landedSet.has(s.jobId)) continue;
    const attempt = s.kind === 'requeue' || s.kind === 'suspend' ? s.attempt - 1 : s.attempt;
    events.push(
      event(
        s.jobId,
        'running',
        settlementTarget(s),
        ctx.now,
        attempt,
        ctx.owner,
        settleMessage(s),
        s.seq === undefined ? undefined : nextSeq(s),
      ),
    );
  }
  let unwrittenEvents: JobEventDoc[] = [];
  try {
    await appendEvents(store, events);
  } catch {
    unwrittenEvents = events;
  }
  return {
    landed: settlements.filter((s) => landedSet.has(s.jobId)).map((s) => s.jobId),
    lost: settlements.filter((s) => !landedSet.has(s.jobId)).map((s) => s.jobId),
    unwrittenEvents,
  };
}

/** A number that BSON and a string key both keep exactly (not NaN, not an infinity, not -0). */
function plainNumber(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && !Object.is(v, -0);
}

/**
 * For a completion whose update is the same document as another's given the same key: its lease token,
 * whether it needs a release, and its scalar result, log tail and resources. Null for any other
 * settlement (it is written alone). Cheap on purpose: it is asked once per job.
 */
function completionKey(s: Settlement): string | null {
  if (s.kind !== 'complete' || s.hookErrors?.length) return null;
  const r = s.result;
  let result: string;
  if (r === null || r === undefined) result = 'n';
  else if (typeof r === 'boolean') result = r ? 't' : 'f';
  else if (plainNumber(r)) result = `#${r}`;
  else return null;
  if (!(s.logTail === undefined || s.logTail === null || s.logTail === '')) return null;
  let res = s.resources === undefined ? 'u' : s.resources === null ? 'n' : '';
  if (s.resources) {
    for (const k in s.resources) {
      const v = s.resources[k as keyof JobResources];
      if (v === undefined) return null;
      if (!plainNumber(v)) return null;
      res += `${k}=${v},`;
    }
  }
  return `${s.token}|${needsNoRelease(s) ? 1 : 0}|${result}|${s.logTail === undefined ? 'u' : String(s.logTail)}|${res}`;
}

/**
 * The guarded updates as bulk-write operations: completions with the same update (most of a batch:
 * the jobs of one claim share its lease token, and no-op results, log tails and timings repeat) go as
 * one updateMany over their ids, each job still matched only by {_id, state: 'running', lease.token};
 * every other settlement is an updateOne of its own.
 */
function settleOps(
  settlements: Settlement[],
  ctx: SettleContext,
): { ops: AnyBulkWriteOperation<StoredJob>[]; small: boolean } {
  const ops: AnyBulkWriteOperation<StoredJob>[] = [];
  const groups = new Map<string, Settlement[]>();
  // Grouped completions carry scalars only: their updates are a few hundred bytes plus their ids.
  let small = true;
  for (const s of settlements) {
    const key = completionKey(s);
    if (key === null) {
      small = false;
      ops.push({ updateOne: { filter: settleFilter(s, s.jobId), update: settleUpdate(s, ctx) } });
      continue;
    }
    const g = groups.get(key);
    if (g) g.push(s);
    else groups.set(key, [s]);
  }
  for (const g of groups.values()) {
    const s = g[0]!;
    if (g.length === 1) {
      ops.push({ updateOne: { filter: settleFilter(s, s.jobId), update: settleUpdate(s, ctx) } });
    } else {
      const ids = g.map((x) => x.jobId);
      ops.push({ updateMany: { filter: settleFilter(s, { $in: ids }), update: settleUpdate(s, ctx) } });
    }
  }
  return { ops, small };
}

/** The lease guard of `s` for the job(s) `id` names. */
function settleFilter(s: Settlement, id: JobId | { $in: JobId[] }): Filter<StoredJob> {
  // A dependent enqueued since the claim marked the job: then this matches nothing (see below). Two
  // literals, not a spread of one into the other, which gives every filter a hidden class of its own.
  return (
    needsNoRelease(s)
      ? { _id: id, state: 'running', 'lease.token': s.token, hasDependents: { $exists: false } }
      : { _id: id, state: 'running', 'lease.token': s.token }
  ) as Filter<StoredJob>;
}

/**
 * The guarded updates; the jobs whose settlement landed. An updateMany is not a retryable write: a
 * reply lost in transit throws, and the caller writes the same settlements again (the ones that landed
 * read back as landed through their settledToken).
 */
async function writeSettlements(
  store: Store,
  settlements: Settlement[],
  ctx: SettleContext,
): Promise<Set<JobId>> {
  const { ops, small } = settleOps(settlements, ctx);
  const matched =
    (small && settlements.length <= 1000 ? await updateCommand(store, ops) : null) ??
    (await store.jobs.bulkWrite(ops, { ordered: false })).matchedCount;
  if (matched === settlements.length) return new Set(settlements.map((s) => s.jobId));
  const docs = await store.jobs
    .find(
      { _id: { $in: settlements.map((s) => s.jobId) } },
      { projection: { _id: 1, settledToken: 1, state: 1, 'lease.token': 1, hasDependents: 1 } },
    )
    .toArray();
  const byId = new Map(docs.map((d) => [d._id, d]));
  const landed = new Set(
    settlements.filter((s) => byId.get(s.jobId)?.settledToken === s.token).map((s) => s.jobId),
  );
  // Still ours, but a dependent marked it after the claim: settle it the full way, with its release.
  const marked = settlements.filter((s) => {
    const d = byId.get(s.jobId);
    return (
      !landed.has(s.jobId) &&
      needsNoRelease(s) &&
      d?.state === 'running' &&
      d.lease?.token === s.token &&
      d.hasDependents === true
    );
  });
  if (marked.length > 0) {
    // The caller's release pass reads this flag off the same objects: these now need one.
    for (const s of marked) s.noDependents = false;
    for (const id of await writeSettlements(store, marked, ctx)) landed.add(id);
  }
  return landed;
}

/**
 * The guarded updates as one documented update command, without the bulk API's per-call machinery
 * (option resolution, sizing, batching, a result object): the documents matched. Null for anything
 * but a clean reply (an error, a write error, a write concern error): the caller then sends the same
 * updates through bulkWrite, whose errors decide as before; an update that landed meanwhile matches
 * nothing the second time and reads back as landed by its settledToken. No server to send to is
 * thrown, as bulkWrite would throw it.
 */
async function updateCommand(store: Store, ops: AnyBulkWriteOperation<StoredJob>[]): Promise<number | null> {
  const updates: Document[] = [];
  for (const op of ops) {
    if ('updateMany' in op) updates.push({ q: op.updateMany.filter, u: op.updateMany.update, multi: true });
    else if ('updateOne' in op) updates.push({ q: op.updateOne.filter, u: op.updateOne.update });
    else return null;
  }
  const cmd: Document = { update: store.jobs.collectionName, updates, ordered: false };
  const reply = await sendWrite(store, store.jobs, cmd);
  if (!reply || reply.writeConcernError || (reply.writeErrors as unknown[] | undefined)?.length) return null;
  return typeof reply.n === 'number' ? reply.n : null;
}

async function settleOne(store: Store, s: Settlement, ctx: SettleContext): Promise<boolean> {
  const r = await settleManyIfRunning(store, [s], ctx);
  return r.landed.length === 1;
}

export function completeIfRunning(
  store: Store,
  s: Omit<Extract<Settlement, { kind: 'complete' }>, 'kind'>,
  ctx: SettleContext,
): Promise<boolean> {
  return settleOne(store, { ...s, kind: 'complete' }, ctx);
}

export function completeManyIfRunning(
  store: Store,
  list: Omit<Extract<Settlement, { kind: 'complete' }>, 'kind'>[],
  ctx: SettleContext,
): Promise<SettleResult> {
  return settleManyIfRunning(
    store,
    list.map((s) => ({ ...s, kind: 'complete' as const })),
    ctx,
  );
}

export function failIfRunning(
  store: Store,
  s: Omit<Extract<Settlement, { kind: 'fail' }>, 'kind'>,
  ctx: SettleContext,
): Promise<boolean> {
  return settleOne(store, { ...s, kind: 'fail' }, ctx);
}

export function requeueIfRunning(
  store: Store,
  s: Omit<Extract<Settlement, { kind: 'requeue' }>, 'kind'>,
  ctx: SettleContext,
): Promise<boolean> {
  return settleOne(store, { ...s, kind: 'requeue' }, ctx);
}

export interface HeartbeatResult {
  renewed: JobId[];
  lost: JobId[];
  /**
   * The leases lost, with their tokens: a job may be held twice at once (an attempt still settling
   * while the job, already requeued, runs again here under a new lease), and only the holder of the
   * lost token may be stopped.
   */
  lostLeases: HeldLease[];
}

/**
 * Renew the leases of all of a worker's running jobs in one updateMany (grouped by token; a batch
 * claim shares one). Jobs whose guard no longer matches are reported lost: their owner must abort
 * the child and write nothing.
 */
export async function heartbeatLeases(
  store: Store,
  opts: { leases: HeldLease[]; leaseMs: number; now: Date },
): Promise<HeartbeatResult> {
  if (opts.leases.length === 0) return { renewed: [], lost: [], lostLeases: [] };
  const byToken = new Map<string, JobId[]>();
  for (const l of opts.leases) {
    const ids = byToken.get(l.token);
    if (ids) ids.push(l.jobId);
    else byToken.set(l.token, [l.jobId]);
  }
  const or = [...byToken].map(([token, ids]) => ({ _id: { $in: ids }, 'lease.token': token }));
  const filter: Filter<StoredJob> = { state: 'running', ...(or.length === 1 ? or[0]! : { $or: or }) };
  const res = await store.jobs.updateMany(filter, {
    $set: { 'lease.expiresAt': new Date(opts.now.getTime() + opts.leaseMs) },
  });
  if (res.matchedCount === opts.leases.length)
    return { renewed: opts.leases.map((l) => l.jobId), lost: [], lostLeases: [] };
  const held = await store.jobs
    .find(
      { _id: { $in: opts.leases.map((l) => l.jobId) }, state: 'running' },
      { projection: { _id: 1, 'lease.token': 1 } },
    )
    .toArray();
  const tokenOf = new Map(held.map((d) => [d._id, d.lease?.token]));
  const renewed: JobId[] = [];
  const lostLeases: HeldLease[] = [];
  for (const l of opts.leases) {
    if (tokenOf.get(l.jobId) === l.token) renewed.push(l.jobId);
    else lostLeases.push(l);
  }
  return { renewed, lost: lostLeases.map((l) => l.jobId), lostLeases };
}

/** Record progress of a running job; false when the lease is gone. */
export async function progressIfRunning(
  store: Store,
  opts: HeldLease & { percent: number; message?: string; now: Date },
): Promise<boolean> {
  const percent = Math.max(0, Math.min(100, Number.isFinite(opts.percent) ? opts.percent : 0));
  const res = await store.jobs.updateOne(leaseGuard(opts), {
    $set: {
      progress: {
        percent,
        ...(opts.message !== undefined ? { message: String(opts.message) } : {}),
        updatedAt: opts.now,
      },
    },
  });
  return res.matchedCount === 1;
}
