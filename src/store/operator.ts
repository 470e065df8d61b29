/** Operator edges (cancel, retry, release) and retention. Each is guarded on the allowed from-states. */
import { MongoServerError } from 'mongodb';
import { IllegalTransitionError, NotFoundError } from '../errors.js';
import { FINISHED_STATES, type JobDoc, type JobId } from '../types.js';
import { appendEvents, event, nextSeq } from './events.js';
import { stripInternal } from './enqueue.js';
import { rearmDependents, releaseAfter } from './release.js';
import { allowedFrom, illegalTransition, isAllowed } from './stateMachine.js';
import type { Store } from './types.js';

async function explainMiss(store: Store, edge: 'cancel' | 'retry' | 'release', id: JobId): Promise<never> {
  const doc = await store.jobs.findOne({ _id: id }, { projection: { state: 1 } });
  if (!doc) throw new NotFoundError(`job ${id} not found`);
  throw illegalTransition(edge, id, doc.state);
}

/**
 * Cancel a job that has not finished. A running job's lease is dropped with it: its worker's next
 * heartbeat finds the lease gone, kills the child and writes nothing.
 */
export async function cancel(
  store: Store,
  id: JobId,
  opts: { now: Date; by?: string; reason?: string },
): Promise<JobDoc> {
  const before = await store.jobs.findOneAndUpdate(
    { _id: id, state: { $in: allowedFrom('cancel') } },
    {
      $set: {
        state: 'cancelled',
        lease: null,
        settledToken: null,
        waitingFor: null,
        finishedAt: opts.now,
        updatedAt: opts.now,
        releasePending: true,
      },
      $unset: { dedupeActive: '' },
      $inc: { seq: 1 },
    },
    { returnDocument: 'before' },
  );
  if (!before) return explainMiss(store, 'cancel', id);
  await appendEvents(store, [
    event(
      id,
      before.state,
      'cancelled',
      opts.now,
      before.attempts,
      opts.by ?? null,
      opts.reason ?? 'cancelled',
      nextSeq(before),
    ),
  ]);
  // Dependents follow their policy, children are cancelled with it, its workflow may close.
  await releaseAfter(store, [id], opts.now);
  const after = await store.jobs.findOne({ _id: id });
  return stripInternal(after ?? { ...before, state: 'cancelled' });
}

/**
 * Operator retry of a failed or cancelled job: back to queued, due now, with a fresh set of attempts.
 * Its error history stays. Optimistic: the update is guarded on the state just read.
 */
export async function retry(store: Store, id: JobId, opts: { now: Date; by?: string }): Promise<JobDoc> {
  for (;;) {
    const doc = await store.jobs.findOne({ _id: id });
    if (!doc) throw new NotFoundError(`job ${id} not found`);
    if (!isAllowed('retry', doc.state)) throw illegalTransition('retry', id, doc.state);
    const set: Record<string, unknown> = {
      state: 'queued',
      runAt: opts.now,
      attempts: 0,
      lease: null,
      settledToken: null,
      progress: null,
      startedAt: null,
      updatedAt: opts.now,
      blockedBy: null,
    };
    // A job that failed because of a dependency waits for it again instead of running at once (a
    // parent failed by a child runs again, resumed, and sees its children).
    if (doc.blockedBy && doc.lastError?.code !== 'JOBD_CHILD_FAILED') {
      set.state = 'waiting';
      set.waitingFor = 'dependencies';
      set.depsLeft = 0;
    }
    if (doc.dedupeKey) set.dedupeActive = doc.dedupeKey;
    let after;
    try {
      after = await store.jobs.findOneAndUpdate(
        { _id: id, state: doc.state },
        // The dataset status service looks at it again (see datasets.ts). An unfinished job has no
        // finishedAt: it leaves the partial cleanup index.
        { $set: set, $unset: { datasetStatusFinal: '', finishedAt: '' }, $inc: { seq: 1 } },
        { returnDocument: 'after' },
      );
    } catch (err) {
      if (err instanceof MongoServerError && err.code === 11000) {
        const holder = await store.jobs.findOne(
          { dedupeActive: doc.dedupeKey ?? '' },
          { projection: { _id: 1 } },
        );
        throw new IllegalTransitionError(
          `cannot retry job ${id}: unfinished job ${holder?._id ?? '(unknown)'} holds its dedupeKey ${JSON.stringify(doc.dedupeKey)}`,
        );
      }
      throw err;
    }
    if (!after) continue; // its state changed under us: read again
    await appendEvents(store, [
      event(id, doc.state, after.state, opts.now, 0, opts.by ?? null, 'retried by operator', after.seq),
    ]);
    if (after.workflowId) {
      await store.workflows.updateOne(
        { _id: after.workflowId, state: 'failed' },
        { $set: { state: 'running', finishedAt: null, updatedAt: opts.now } },
      );
    }
    if (after.state === 'waiting') await releaseAfter(store, [id], opts.now);
    // The jobs that failed or were skipped because of this one wait for it again.
    await rearmDependents(store, [id], opts.now);
    return stripInternal((await store.jobs.findOne({ _id: id })) ?? after);
  }
}

/** Dependencies met: waiting → queued. Ids not waiting raise IllegalTransitionError. */
export async function releaseWaiting(store: Store, id: JobId, opts: { now: Date }): Promise<JobDoc> {
  const after = await store.jobs.findOneAndUpdate(
    { _id: id, state: 'waiting' },
    { $set: { state: 'queued', updatedAt: opts.now }, $inc: { seq: 1 } },
    { returnDocument: 'after' },
  );
  if (!after) return explainMiss(store, 'release', id);
  await appendEvents(store, [
    event(id, 'waiting', 'queued', opts.now, after.attempts, null, 'dependencies met', after.seq),
  ]);
  return stripInternal(after);
}

/** Retention: delete finished jobs (and their events) whose finishedAt is before `before`. Returns jobs deleted. */
export async function deleteFinishedBefore(
  store: Store,
  opts: { before: Date; states?: readonly JobDoc['state'][]; chunk?: number },
): Promise<number> {
  const states = (opts.states ?? FINISHED_STATES).filter((s) => FINISHED_STATES.includes(s));
  const filter = { state: { $in: [...states] }, finishedAt: { $lt: opts.before } };
  let total = 0;
  for (;;) {
    const ids = (
      await store.jobs.find(filter, { projection: { _id: 1 }, limit: opts.chunk ?? 1000 }).toArray()
    ).map((d) => d._id);
    if (ids.length === 0) return total;
    const res = await store.jobs.deleteMany({ ...filter, _id: { $in: ids } });
    await store.events.deleteMany({ jobId: { $in: ids } });
    await store.logs.deleteMany({ jobId: { $in: ids } });
    total += res.deletedCount;
  }
}
