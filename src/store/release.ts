/**
 * Release: the one mechanism behind dependencies, workflows and sub-jobs. After jobs finish (or a
 * parent suspends to wait for its children), their dependents are told: satisfied ones are released
 * (waiting → queued), blocked ones follow their policy (depfail → failed, depskip → cancelled),
 * cancelled or child-failed parents cancel their unfinished children, and workflows whose jobs are all
 * finished are closed. Idempotent: running it twice for the same jobs is harmless, so the daemon runs it
 * right after a settle lands and the releaser sweep runs it again for any job whose release was missed.
 */
import type { AnyBulkWriteOperation, Filter } from 'mongodb';
import type { JobEventDoc, JobId, JobState, SerializedError, WorkflowState } from '../types.js';
import { appendEvents, event } from './events.js';
import type { Store, StoredJob } from './types.js';
import { finishWorkflowIfDone } from './workflows.js';

const UNFINISHED: JobState[] = ['waiting', 'queued', 'running', 'retrying'];
/** Cascades (a failure failing its dependents, and theirs...) are followed this many levels per call. */
const MAX_ROUNDS = 1_000;
/** Attempts at repairing one job's depsLeft hint while others change it. */
const MAX_REPAIRS = 5;

export interface ReleaseResult {
  released: JobId[];
  /** Failed because a dependency (or, for a parent, a child) failed for good. */
  depfailed: { id: JobId; dependency: JobId; code: string }[];
  /** Cancelled because a dependency failed (policy skip). */
  depskipped: { id: JobId; dependency: JobId }[];
  /** Unfinished children cancelled with their parent. */
  cascaded: JobId[];
  workflows: { id: string; state: WorkflowState }[];
}

type Candidate = Pick<
  StoredJob,
  | '_id'
  | 'state'
  | 'dependsOn'
  | 'onDependencyFailure'
  | 'childPolicy'
  | 'waitingFor'
  | 'depsLeft'
  | 'seq'
  | 'attempts'
  | 'workflowId'
  | 'parentId'
  | 'lastError'
>;

const CANDIDATE_PROJECTION = {
  state: 1,
  dependsOn: 1,
  onDependencyFailure: 1,
  childPolicy: 1,
  waitingFor: 1,
  depsLeft: 1,
  seq: 1,
  attempts: 1,
  workflowId: 1,
  parentId: 1,
  'lastError.code': 1,
} as const;

type Decision =
  | { kind: 'release' }
  | { kind: 'wait'; unsatisfied: number }
  | { kind: 'fail' | 'skip'; dependency: JobId; depState: JobState | 'missing' };

/** The exact decision for a waiting job from its dependencies' states (a deleted one counts as cancelled). */
export function decide(job: Candidate, states: Map<JobId, JobState>): Decision {
  const children = job.waitingFor === 'children';
  const policy = children ? (job.childPolicy ?? 'fail') : (job.onDependencyFailure ?? 'fail');
  let unsatisfied = 0;
  let anyFailed = false;
  for (const dep of job.dependsOn ?? []) {
    const st = states.get(dep);
    if (st === 'completed') continue;
    if (st === undefined || st === 'failed' || st === 'cancelled') {
      if (policy === 'ignore') continue;
      if (policy === 'continue') {
        anyFailed = true;
        continue;
      }
      return { kind: policy === 'skip' ? 'skip' : 'fail', dependency: dep, depState: st ?? 'missing' };
    }
    unsatisfied++;
  }
  return unsatisfied === 0 || anyFailed ? { kind: 'release' } : { kind: 'wait', unsatisfied };
}

function blockedError(job: Candidate, d: Extract<Decision, { kind: 'fail' | 'skip' }>): SerializedError {
  const how = d.depState === 'missing' ? 'no longer exists' : `is ${d.depState}`;
  if (job.waitingFor === 'children') {
    return {
      name: 'ChildFailedError',
      code: 'JOBD_CHILD_FAILED',
      message: `child job ${d.dependency} ${how} (childPolicy fail)`,
    };
  }
  if (d.kind === 'skip') {
    return {
      name: 'DependencySkippedError',
      code: 'JOBD_DEPENDENCY_SKIPPED',
      message: `skipped: dependency ${d.dependency} ${how} (onDependencyFailure skip)`,
    };
  }
  return {
    name: 'DependencyFailedError',
    code: 'JOBD_DEPENDENCY_FAILED',
    message: `dependency ${d.dependency} ${how} (onDependencyFailure fail)`,
  };
}

async function statesOf(store: Store, ids: Iterable<JobId>): Promise<Map<JobId, JobState>> {
  const list = [...new Set(ids)];
  const out = new Map<JobId, JobState>();
  if (list.length === 0) return out;
  const docs = await store.jobs.find({ _id: { $in: list } }, { projection: { state: 1 } }).toArray();
  for (const d of docs) out.set(d._id, d.state);
  return out;
}

/**
 * Tell the dependents (and workflows, and children) of `ids` that these jobs finished or suspended.
 * Jobs of `ids` that are themselves waiting are checked against their own dependencies (a job enqueued
 * after its dependencies finished, a parent whose children finished before it suspended).
 */
export async function releaseAfter(
  store: Store,
  ids: JobId[],
  now: Date,
  /** onReleased: as soon as jobs are queued (before the rest of the release is written), to wake claims. */
  hooks: {
    onReleased?(ids: JobId[]): void;
    /**
     * What the caller knows of `ids` (the settle path: the state it just wrote and the job's workflow),
     * which saves reading them back.
     */
    known?: { id: JobId; state: 'completed' | 'failed'; workflowId?: string | null }[];
  } = {},
): Promise<ReleaseResult> {
  const result: ReleaseResult = { released: [], depfailed: [], depskipped: [], cascaded: [], workflows: [] };
  const processed: JobId[] = [];
  let clean = true;
  const workflowIds = new Set<string>();
  let frontier = [...new Set(ids)];
  const known = hooks.known && hooks.known.length === frontier.length ? hooks.known : null;
  for (let round = 0; frontier.length > 0 && round < MAX_ROUNDS; round++) {
    const docs =
      round === 0 && known
        ? known.map((k) => ({ _id: k.id, state: k.state, workflowId: k.workflowId ?? null }) as Candidate)
        : ((await store.jobs
            .find({ _id: { $in: frontier } }, { projection: CANDIDATE_PROJECTION })
            .toArray()) as Candidate[]);
    const frontierStates = new Map(docs.map((d) => [d._id, d.state]));
    processed.push(...frontier);
    const next: JobId[] = [];
    const completed = docs.filter((d) => d.state === 'completed').map((d) => d._id);
    const blocked = docs.filter((d) => d.state === 'failed' || d.state === 'cancelled').map((d) => d._id);
    for (const d of docs) if (d.workflowId && !UNFINISHED.includes(d.state)) workflowIds.add(d.workflowId);

    // 1. The hint: one decrement per (completed dependency, dependent) pair, one update per dependent
    //    (a repeat only makes it low, which is safe). Counting server-side keeps a large fan-in's
    //    dependency list off the wire.
    const touched: JobId[] = [];
    if (completed.length > 0) {
      const counts = await store.jobs
        .aggregate<{ _id: JobId; n: number }>([
          { $match: { dependsOn: { $in: completed }, state: 'waiting' } },
          { $project: { n: { $size: { $setIntersection: ['$dependsOn', completed] } } } },
        ])
        .toArray();
      if (counts.length > 0) {
        await store.jobs.bulkWrite(
          counts.map((c) => ({
            updateOne: { filter: { _id: c._id, state: 'waiting' }, update: { $inc: { depsLeft: -c.n } } },
          })),
          { ordered: false },
        );
        touched.push(...counts.map((c) => c._id));
      }
    }
    // 2. Candidates for the exact check: dependents whose hint reached 0, every waiting dependent of a
    //    failed or cancelled job (its policy decides), and the waiting jobs of the frontier themselves.
    const or: Filter<StoredJob>[] = [];
    if (touched.length > 0) or.push({ _id: { $in: touched }, depsLeft: { $lte: 0 } });
    if (blocked.length > 0) or.push({ dependsOn: { $in: blocked } });
    const self = docs.filter((d) => d.state === 'waiting' && (d.dependsOn?.length ?? 0) > 0);
    const candidates = new Map<JobId, Candidate>(self.map((d) => [d._id, d]));
    if (or.length > 0) {
      const found = (await store.jobs
        .find(
          { state: 'waiting', ...(or.length === 1 ? or[0]! : { $or: or }) },
          { projection: CANDIDATE_PROJECTION },
        )
        .toArray()) as Candidate[];
      for (const c of found) candidates.set(c._id, c);
    }
    const outcome = await settleCandidates(store, [...candidates.values()], now, frontierStates);
    if (outcome.released.length > 0) hooks.onReleased?.(outcome.released);
    if (!outcome.clean) clean = false;
    result.released.push(...outcome.released);
    result.depfailed.push(...outcome.depfailed);
    result.depskipped.push(...outcome.depskipped);
    next.push(...outcome.depfailed.map((x) => x.id), ...outcome.depskipped.map((x) => x.id));

    // 3. A cancelled parent, or one failed by a child, takes its unfinished children with it.
    const cascadeFrom = docs
      .filter(
        (d) => d.state === 'cancelled' || (d.state === 'failed' && d.lastError?.code === 'JOBD_CHILD_FAILED'),
      )
      .map((d) => d._id);
    cascadeFrom.push(...outcome.depfailed.filter((x) => x.code === 'JOBD_CHILD_FAILED').map((x) => x.id));
    cascadeFrom.push(...outcome.depskipped.map((x) => x.id));
    if (cascadeFrom.length > 0) {
      const cancelled = await cancelChildren(store, cascadeFrom, now);
      result.cascaded.push(...cancelled);
      next.push(...cancelled);
    }
    frontier = [...new Set(next)];
  }
  if (frontier.length > 0) clean = false; // the rest is left to the sweep

  // 4. Workflows whose jobs are all finished.
  for (const wf of workflowIds) {
    const closed = await finishWorkflowIfDone(store, wf, now);
    if (closed) result.workflows.push({ id: wf, state: closed });
  }
  // 5. Done: the sweep need not look at these again (unless a repair gave up: then it must).
  if (clean && processed.length > 0) {
    await store.jobs.updateMany(
      { _id: { $in: [...new Set(processed)] }, releasePending: { $exists: true } },
      { $unset: { releasePending: '' } },
    );
  }
  return result;
}

interface Settled {
  released: JobId[];
  depfailed: ReleaseResult['depfailed'];
  depskipped: ReleaseResult['depskipped'];
  clean: boolean;
}

async function settleCandidates(
  store: Store,
  candidates: Candidate[],
  now: Date,
  /** States just read or written: finished states cannot change under us, so they need no re-read. */
  knownStates: Map<JobId, JobState>,
): Promise<Settled> {
  const out: Settled = { released: [], depfailed: [], depskipped: [], clean: true };
  let pending = candidates;
  for (let attempt = 0; pending.length > 0; attempt++) {
    if (attempt >= MAX_REPAIRS) {
      out.clean = false;
      break;
    }
    const finishedKnown = (id: JobId): boolean => {
      const st = knownStates.get(id);
      return st === 'completed' || st === 'failed' || st === 'cancelled';
    };
    const states = await statesOf(
      store,
      pending.flatMap((c) => c.dependsOn ?? []).filter((id) => !finishedKnown(id)),
    );
    for (const [id, st] of knownStates) if (finishedKnown(id)) states.set(id, st);
    const ops: AnyBulkWriteOperation<StoredJob>[] = [];
    const events: JobEventDoc[] = [];
    const retry: JobId[] = [];
    const repairs: { c: Candidate; unsatisfied: number }[] = [];
    const transitions: { c: Candidate; d: Exclude<Decision, { kind: 'wait' }> }[] = [];
    for (const c of pending) {
      const d = decide(c, states);
      if (d.kind === 'wait') {
        if (c.depsLeft !== d.unsatisfied) repairs.push({ c, unsatisfied: d.unsatisfied });
        continue;
      }
      transitions.push({ c, d });
      const guard = { _id: c._id, state: 'waiting' as const, seq: c.seq };
      const seq = (c.seq ?? 0) + 1;
      if (d.kind === 'release') {
        ops.push({
          updateOne: {
            filter: guard,
            update: {
              $set: { state: 'queued', waitingFor: null, depsLeft: 0, updatedAt: now },
              $inc: { seq: 1 },
            },
          },
        });
        const why = c.waitingFor === 'children' ? 'children finished' : 'dependencies met';
        events.push(event(c._id, 'waiting', 'queued', now, c.attempts, null, why, seq));
      } else {
        const err = blockedError(c, d);
        const to = d.kind === 'skip' ? 'cancelled' : 'failed';
        ops.push({
          updateOne: {
            filter: guard,
            update: {
              $set: {
                state: to,
                waitingFor: null,
                blockedBy: d.dependency,
                lastError: { ...err, at: now, attempt: c.attempts },
                finishedAt: now,
                updatedAt: now,
                releasePending: true,
              },
              $unset: { dedupeActive: '' },
              $inc: { seq: 1 },
            },
          },
        });
        events.push(event(c._id, 'waiting', to, now, c.attempts, null, err.message, seq));
      }
    }
    for (const { c, unsatisfied } of repairs) {
      // Compare-and-set on the hint as read: a decrement in between makes this miss, and we look again.
      ops.push({
        updateOne: {
          filter: { _id: c._id, state: 'waiting', depsLeft: c.depsLeft },
          update: { $set: { depsLeft: unsatisfied } },
        },
      });
    }
    if (ops.length === 0) break;
    const res = await store.jobs.bulkWrite(ops, { ordered: false });
    let won = new Set(transitions.map((t) => t.c._id));
    const repairedAll = res.matchedCount === ops.length;
    if (!repairedAll) {
      // Someone else moved some of them (or changed a hint): read back who is where.
      const ids = pending.map((c) => c._id);
      const now2 = await store.jobs
        .find({ _id: { $in: ids } }, { projection: CANDIDATE_PROJECTION })
        .toArray();
      const byId = new Map(now2.map((d) => [d._id, d as Candidate]));
      won = new Set(
        transitions
          .filter(
            (t) => byId.get(t.c._id)?.seq === (t.c.seq ?? 0) + 1 && byId.get(t.c._id)?.state !== 'waiting',
          )
          .map((t) => t.c._id),
      );
      for (const { c } of repairs) {
        const cur = byId.get(c._id);
        if (cur && cur.state === 'waiting' && cur.depsLeft !== c.depsLeft) retry.push(c._id);
      }
      for (const t of transitions) {
        const cur = byId.get(t.c._id);
        if (cur && cur.state === 'waiting' && !won.has(t.c._id)) retry.push(t.c._id);
      }
      pending = retry.map((id) => byId.get(id)!).filter(Boolean);
    } else {
      pending = [];
    }
    await appendEvents(
      store,
      events.filter((e) => won.has(e.jobId)),
    );
    for (const { c, d } of transitions) {
      if (!won.has(c._id)) continue;
      if (d.kind === 'release') out.released.push(c._id);
      else if (d.kind === 'skip') out.depskipped.push({ id: c._id, dependency: d.dependency });
      else out.depfailed.push({ id: c._id, dependency: d.dependency, code: blockedError(c, d).code! });
    }
  }
  return out;
}

/** Cancel the unfinished children of these parents (their own children follow in the next round). */
async function cancelChildren(store: Store, parents: JobId[], now: Date): Promise<JobId[]> {
  const kids = await store.jobs
    .find(
      { parentId: { $in: parents }, state: { $in: UNFINISHED } },
      { projection: { state: 1, seq: 1, attempts: 1, parentId: 1 } },
    )
    .toArray();
  const out: JobId[] = [];
  for (const k of kids) {
    const res = await store.jobs.updateOne(
      { _id: k._id, state: k.state, seq: k.seq },
      {
        $set: {
          state: 'cancelled',
          lease: null,
          settledToken: null,
          waitingFor: null,
          finishedAt: now,
          updatedAt: now,
          releasePending: true,
        },
        $unset: { dedupeActive: '' },
        $inc: { seq: 1 },
      },
    );
    if (res.matchedCount !== 1) continue;
    out.push(k._id);
    await appendEvents(store, [
      event(
        k._id,
        k.state,
        'cancelled',
        now,
        k.attempts,
        null,
        `cancelled with its parent ${k.parentId}`,
        (k.seq ?? 0) + 1,
      ),
    ]);
  }
  return out;
}

/**
 * Operator retry of `ids` re-arms the jobs that failed or were skipped because of them (and, in turn,
 * theirs): back to waiting, their dependencies checked again at once.
 */
export async function rearmDependents(store: Store, ids: JobId[], now: Date): Promise<JobId[]> {
  const rearmed: JobId[] = [];
  let frontier = [...ids];
  for (let round = 0; frontier.length > 0 && round < MAX_ROUNDS; round++) {
    const docs = await store.jobs
      .find(
        { blockedBy: { $in: frontier }, state: { $in: ['failed', 'cancelled'] } },
        { projection: { state: 1, seq: 1, attempts: 1, dedupeKey: 1, workflowId: 1, 'lastError.code': 1 } },
      )
      .toArray();
    const next: JobId[] = [];
    for (const d of docs) {
      const set: Record<string, unknown> = {
        state: 'waiting',
        waitingFor: d.lastError?.code === 'JOBD_CHILD_FAILED' ? 'children' : 'dependencies',
        blockedBy: null,
        // The hint is recomputed by the exact check below; 0 can only make it look sooner.
        depsLeft: 0,
        attempts: 0,
        updatedAt: now,
      };
      if (d.dedupeKey) set.dedupeActive = d.dedupeKey;
      const res = await store.jobs
        .updateOne(
          { _id: d._id, state: d.state, seq: d.seq },
          // Unfinished again: no finishedAt, out of the partial cleanup index.
          { $set: set, $unset: { datasetStatusFinal: '', finishedAt: '' }, $inc: { seq: 1 } },
        )
        .catch(() => null); // a dedupeKey now held by another job: left as it is
      if (res?.matchedCount !== 1) continue;
      await appendEvents(store, [
        event(
          d._id,
          d.state,
          'waiting',
          now,
          0,
          null,
          're-armed: its dependency was retried',
          (d.seq ?? 0) + 1,
        ),
      ]);
      if (d.workflowId) {
        await store.workflows.updateOne(
          { _id: d.workflowId, state: 'failed' },
          { $set: { state: 'running', finishedAt: null, updatedAt: now } },
        );
      }
      rearmed.push(d._id);
      next.push(d._id);
    }
    frontier = next;
  }
  if (rearmed.length > 0) await releaseAfter(store, rearmed, now);
  return rearmed;
}
