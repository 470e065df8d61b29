/**
 * Writing workflows: crash-safe submission, the sweep that finishes or abandons an interrupted one,
 * and cancel.
 *
 * Submission: (1) the workflow document, `submitting`, with every job's id chosen up front; (2) all
 * jobs, `waiting` (roots too, waitingFor 'submit'); (3) the workflow `running` (compare-and-set);
 * (4) the roots released. Until (3) nothing of it can run; a crash before (3) leaves a `submitting`
 * workflow that the releaser sweep completes (all jobs present) or abandons (jobs deleted, state
 * `cancelled`). A re-submit with the same id resumes from whatever step was reached.
 */
import { MongoBulkWriteError, MongoServerError, type AnyBulkWriteOperation } from 'mongodb';
import { JobdError, NotFoundError } from '../errors.js';
import type { JobEventDoc, JobId, WorkflowDoc } from '../types.js';
import { newJobDoc, newJobId } from './enqueue.js';
import { appendEvents, event } from './events.js';
import type { NewJob } from './newJob.js';
import { releaseAfter } from './release.js';
import type { Store, StoredJob } from './types.js';
import { UNFINISHED_STATES } from './workflows.js';

export interface WorkflowJobInput {
  key: string;
  /** Keys of the jobs this one waits for. */
  dependsOn: string[];
  job: NewJob;
}

export interface SubmitResult {
  workflow: WorkflowDoc;
  /** false: a workflow with this id had been submitted already; it is returned as it is. */
  created: boolean;
}

const INSERT_CHUNK = 1_000;

export class WorkflowAbandonedError extends JobdError {
  constructor(id: string) {
    super(
      `workflow ${id} was abandoned while it was being submitted (its submit took longer than the releaser allows); submit it again`,
      'JOBD_WORKFLOW_ABANDONED',
    );
    this.name = 'WorkflowAbandonedError';
  }
}

function isDuplicateKey(err: unknown): boolean {
  return err instanceof MongoServerError && err.code === 11000;
}

/** Insert docs, ignoring those already stored (a resumed submit). */
async function insertIgnoringDuplicates(store: Store, docs: StoredJob[]): Promise<StoredJob[]> {
  if (docs.length === 0) return [];
  try {
    await store.jobs.insertMany(docs, { ordered: false });
    return docs;
  } catch (err) {
    if (!(err instanceof MongoBulkWriteError)) throw err;
    const errors = Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors];
    if (!errors.every((e) => e.code === 11000)) throw err;
    const dup = new Set(errors.map((e) => e.index));
    return docs.filter((_, i) => !dup.has(i));
  }
}

export async function submitWorkflowJobs(
  store: Store,
  wf: { id?: string; name: string; jobs: WorkflowJobInput[] },
  now: Date,
): Promise<SubmitResult> {
  const id = wf.id ?? newJobId();
  let doc = await store.workflows.findOne({ _id: id });
  let created = false;
  if (!doc) {
    const keys: Record<string, JobId> = {};
    for (const j of wf.jobs) keys[j.key] = newJobId();
    const fresh: WorkflowDoc = {
      _id: id,
      name: wf.name,
      state: 'submitting',
      jobCount: wf.jobs.length,
      keys,
      createdAt: now,
      updatedAt: now,
      finishedAt: null,
    };
    try {
      await store.workflows.insertOne(fresh);
      doc = fresh;
      created = true;
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
      doc = await store.workflows.findOne({ _id: id });
      if (!doc) throw err;
    }
  }
  if (doc.state !== 'submitting') return { workflow: doc, created };
  const keys = doc.keys;
  const docs = wf.jobs.map((j) => {
    const deps = j.dependsOn.map((k) => keys[k]!);
    const d = newJobDoc(
      {
        ...j.job,
        id: keys[j.key]!,
        waiting: true,
        waitingFor: deps.length > 0 ? 'dependencies' : 'submit',
        ...(deps.length > 0 ? { dependsOn: deps } : {}),
        workflowId: id,
        workflowKey: j.key,
      },
      now,
    );
    // Nothing of the workflow runs before all of it is stored: no release can be missed yet.
    delete d.releasePending;
    return d;
  });
  for (let i = 0; i < docs.length; i += INSERT_CHUNK) {
    const written = await insertIgnoringDuplicates(store, docs.slice(i, i + INSERT_CHUNK));
    await appendEvents(
      store,
      written.map((d) => event(d._id, null, 'waiting', now, 0, null, `enqueued in workflow ${id}`, 1)),
    );
  }
  const started = await startWorkflow(store, id, now);
  if (!started) {
    const cur = await store.workflows.findOne({ _id: id });
    if (cur?.state === 'cancelled') {
      await store.jobs.deleteMany({ workflowId: id, state: 'waiting' });
      throw new WorkflowAbandonedError(id);
    }
    if (cur) return { workflow: cur, created };
  }
  return { workflow: (await store.workflows.findOne({ _id: id })) ?? doc, created };
}

/** submitting → running, then release the roots. False when the workflow was not submitting. */
export async function startWorkflow(store: Store, id: string, now: Date): Promise<boolean> {
  const res = await store.workflows.updateOne(
    { _id: id, state: 'submitting' },
    { $set: { state: 'running', updatedAt: now } },
  );
  if (res.modifiedCount !== 1) {
    const cur = await store.workflows.findOne({ _id: id }, { projection: { state: 1 } });
    if (cur?.state !== 'running') return false;
  }
  await releaseRoots(store, id, now);
  return true;
}

async function releaseRoots(store: Store, id: string, now: Date): Promise<void> {
  const roots = await store.jobs
    .find({ workflowId: id, state: 'waiting', waitingFor: 'submit' }, { projection: { seq: 1, attempts: 1 } })
    .toArray();
  if (roots.length === 0) return;
  const ops: AnyBulkWriteOperation<StoredJob>[] = roots.map((r) => ({
    updateOne: {
      filter: { _id: r._id, state: 'waiting', waitingFor: 'submit', seq: r.seq },
      update: { $set: { state: 'queued', waitingFor: null, updatedAt: now }, $inc: { seq: 1 } },
    },
  }));
  await store.jobs.bulkWrite(ops, { ordered: false });
  await appendEvents(
    store,
    roots.map((r) =>
      event(r._id, 'waiting', 'queued', now, r.attempts, null, 'workflow submitted', (r.seq ?? 0) + 1),
    ),
  );
}

/**
 * Finish or abandon workflows left `submitting` since before `olderThan` (their submitter died):
 * with every job stored it is started; otherwise its jobs are deleted and it is cancelled.
 */
export async function sweepSubmitting(
  store: Store,
  olderThan: Date,
  now: Date,
): Promise<{ started: string[]; abandoned: string[] }> {
  const out = { started: [] as string[], abandoned: [] as string[] };
  const stuck = await store.workflows
    .find({ state: 'submitting', updatedAt: { $lt: olderThan } }, { projection: { jobCount: 1 }, limit: 100 })
    .toArray();
  for (const wf of stuck) {
    const have = await store.jobs.countDocuments({ workflowId: wf._id });
    if (have === wf.jobCount) {
      if (await startWorkflow(store, wf._id, now)) out.started.push(wf._id);
      continue;
    }
    const res = await store.workflows.updateOne(
      { _id: wf._id, state: 'submitting' },
      {
        $set: {
          state: 'cancelled',
          finishedAt: now,
          updatedAt: now,
          reason: `abandoned: its submit stopped with ${have} of ${wf.jobCount} jobs written`,
        },
      },
    );
    if (res.modifiedCount !== 1) continue;
    const ids = (await store.jobs.find({ workflowId: wf._id }, { projection: { _id: 1 } }).toArray()).map(
      (d) => d._id,
    );
    await store.jobs.deleteMany({ workflowId: wf._id, state: 'waiting' });
    await store.events.deleteMany({ jobId: { $in: ids } });
    out.abandoned.push(wf._id);
  }
  return out;
}

/**
 * Cancel a workflow: the workflow first (so no releaser closes it as failed meanwhile), then every
 * unfinished job in one bulk write. Running jobs lose their lease; their workers kill them.
 */
export async function cancelWorkflow(
  store: Store,
  id: string,
  opts: { now: Date; by?: string; reason?: string },
): Promise<{ workflow: WorkflowDoc; cancelled: JobId[] }> {
  const wf = await store.workflows.findOne({ _id: id }, { projection: { keys: 0 } });
  if (!wf) throw new NotFoundError(`workflow ${id} not found`);
  const reason = opts.reason ?? 'workflow cancelled';
  await store.workflows.updateOne(
    { _id: id, state: { $in: ['submitting', 'running'] } },
    { $set: { state: 'cancelled', finishedAt: opts.now, updatedAt: opts.now, reason } },
  );
  const cancelled: JobId[] = [];
  for (let round = 0; round < 10; round++) {
    const open = await store.jobs
      .find(
        { workflowId: id, state: { $in: [...UNFINISHED_STATES] } },
        { projection: { state: 1, seq: 1, attempts: 1 } },
      )
      .toArray();
    if (open.length === 0) break;
    const ops: AnyBulkWriteOperation<StoredJob>[] = open.map((j) => ({
      updateOne: {
        filter: { _id: j._id, state: j.state, seq: j.seq },
        update: {
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
      },
    }));
    await store.jobs.bulkWrite(ops, { ordered: false });
    const now = await store.jobs
      .find({ _id: { $in: open.map((j) => j._id) } }, { projection: { state: 1, seq: 1 } })
      .toArray();
    const byId = new Map(now.map((d) => [d._id, d]));
    const events: JobEventDoc[] = [];
    for (const j of open) {
      const cur = byId.get(j._id);
      if (cur?.state !== 'cancelled' || cur.seq !== (j.seq ?? 0) + 1) continue;
      cancelled.push(j._id);
      events.push(event(j._id, j.state, 'cancelled', opts.now, j.attempts, opts.by ?? null, reason, cur.seq));
    }
    await appendEvents(store, events);
  }
  if (cancelled.length > 0) await releaseAfter(store, cancelled, opts.now);
  const after = await store.workflows.findOne({ _id: id }, { projection: { keys: 0 } });
  return { workflow: after ?? wf, cancelled };
}
