/**
 * Datasets: the legacy datasets collection (documents matched by `uuid`) whose `status` follows its
 * jobs, and the job-side marks of what has been applied (docs/datasets.md).
 *
 * On the dataset: `status` (legacy vocabulary) and `jobd_status` = { jobId, jobCreatedAt, seq, at }
 * of the transition that set it, `rev` (a counter every write bumps), and `history` (bounded).
 * On a job with a datasetUuid: `datasetStatusSeq` (its last transition applied), `datasetStatusState`
 * (the state it reached) and `datasetStatusFinal` (applied in a finished state; an operator retry or
 * re-arm clears it).
 */
import type { Collection, Document, Filter } from 'mongodb';
import { FINISHED_STATES, type JobEventDoc, type JobId, type JobState } from '../types.js';
import { MIGRATION_TAG } from './migration.js';
import type { Store, StoredJob } from './types.js';
import { watchCollection, type Watcher, type WatchHandlers } from './watch.js';

export interface DatasetLocation {
  collection: string;
  /** null: jobd's database. */
  database: string | null;
}

export interface StatusHistoryEntry {
  from: string | null;
  to: string;
  jobId: JobId;
  type: string;
  /** The job state whose transition made this change. */
  jobState: JobState;
  at: Date;
}

export interface DatasetStatusDoc {
  jobId: JobId;
  jobCreatedAt: Date;
  seq: number;
  at: Date;
  rev: number;
  history: StatusHistoryEntry[];
}

/** A dataset document as jobd reads it (legacy fields are free-form). */
export interface DatasetDoc extends Document {
  _id: unknown;
  uuid?: unknown;
  status?: unknown;
  jobd_status?: DatasetStatusDoc;
  jobd_job_ids?: unknown;
}

export function datasetsCollection(store: Store, where: DatasetLocation): Collection<DatasetDoc> {
  const db = where.database ? store.client.db(where.database) : store.db;
  return db.collection<DatasetDoc>(where.collection);
}

/** Up to two documents with this uuid: none, the one, or a sign that the uuid is held twice. */
export async function datasetsByUuid(coll: Collection<DatasetDoc>, uuid: string): Promise<DatasetDoc[]> {
  return coll
    .find({ uuid } as Filter<DatasetDoc>)
    .sort({ _id: 1 })
    .limit(2)
    .toArray();
}

/** What the status service reads of a job. */
export type StatusJob = Pick<
  StoredJob,
  '_id' | 'type' | 'tags' | 'state' | 'seq' | 'attempts' | 'createdAt' | 'updatedAt' | 'datasetUuid'
> & {
  datasetStatusSeq?: number;
  datasetStatusState?: JobState | null;
};

/**
 * Jobs with a datasetUuid whose last transition is not yet applied to their dataset, in _id order.
 * Served by the `dataset_status` index: finished jobs already applied are outside its scan.
 */
export async function jobsWithStatusPending(
  store: Store,
  opts: { after?: JobId; limit: number },
): Promise<StatusJob[]> {
  const filter: Document = {
    datasetUuid: { $type: 'string' },
    datasetStatusFinal: { $ne: true },
    $expr: { $ne: [{ $ifNull: ['$datasetStatusSeq', -1] }, { $ifNull: ['$seq', 0] }] },
  };
  if (opts.after !== undefined) filter._id = { $gt: opts.after };
  return (await store.jobs
    .find(filter as Filter<StoredJob>, {
      projection: {
        type: 1,
        tags: 1,
        state: 1,
        seq: 1,
        attempts: 1,
        createdAt: 1,
        updatedAt: 1,
        datasetUuid: 1,
        datasetStatusSeq: 1,
        datasetStatusState: 1,
      },
      sort: { _id: 1 },
      limit: opts.limit,
      hint: 'dataset_status',
    })
    .toArray()) as StatusJob[];
}

/** A job's numbered events after `afterSeq` up to `toSeq`, by number. */
export async function eventsBetween(
  store: Store,
  jobId: JobId,
  afterSeq: number,
  toSeq: number,
): Promise<JobEventDoc[]> {
  return store.events
    .find({ jobId, seq: { $gt: afterSeq, $lte: toSeq } })
    .sort({ seq: 1 })
    .toArray();
}

/** The jobs of the same dataset that wait for this one (the next stages of its pipeline). */
export async function datasetDependents(
  store: Store,
  jobId: JobId,
  uuid: string,
): Promise<Pick<StoredJob, '_id' | 'type' | 'tags'>[]> {
  return store.jobs
    .find({ dependsOn: jobId, datasetUuid: uuid }, { projection: { type: 1, tags: 1 } })
    .toArray();
}

export interface StatusWrite {
  datasetId: unknown;
  /** What was read: the write lands only if neither changed since (compare-and-set). */
  expect: { status: unknown; rev: number | null };
  setter: { jobId: JobId; jobCreatedAt: Date; seq: number; at: Date };
  /** The earliest transition written; the filter also requires the setter on record to be no newer. */
  first: { seq: number; at: Date };
  status: string;
  entries: StatusHistoryEntry[];
  historyLimit: number;
  /** A migrated job writes only while its dataset still carries the migration's mark of it. */
  migratedJob: boolean;
}

/**
 * One guarded update of a dataset's status: compare-and-set on what was read (status and `rev`),
 * and never over a status set by a newer job (created later), or by a later transition of the same
 * job or of a job created at the same moment (a pipeline's stages). Returns whether it landed.
 */
export async function writeDatasetStatus(coll: Collection<DatasetDoc>, w: StatusWrite): Promise<boolean> {
  const { jobId, jobCreatedAt } = w.setter;
  const filter: Document = {
    _id: w.datasetId,
    status: w.expect.status === undefined ? { $exists: false } : w.expect.status,
    'jobd_status.rev': w.expect.rev === null ? { $exists: false } : w.expect.rev,
    $or: [
      { 'jobd_status.jobCreatedAt': { $exists: false } },
      { 'jobd_status.jobCreatedAt': { $lt: jobCreatedAt } },
      {
        'jobd_status.jobCreatedAt': jobCreatedAt,
        'jobd_status.jobId': jobId,
        'jobd_status.seq': { $lt: w.first.seq },
      },
      {
        'jobd_status.jobCreatedAt': jobCreatedAt,
        'jobd_status.jobId': { $ne: jobId },
        'jobd_status.at': { $lte: w.first.at },
      },
    ],
  };
  if (w.migratedJob) filter.jobd_job_ids = jobId;
  const res = await coll.updateOne(
    filter as Filter<DatasetDoc>,
    {
      $set: {
        status: w.status,
        'jobd_status.jobId': jobId,
        'jobd_status.jobCreatedAt': jobCreatedAt,
        'jobd_status.seq': w.setter.seq,
        'jobd_status.at': w.setter.at,
        'jobd_status.rev': (w.expect.rev ?? 0) + 1,
      },
      $push: { 'jobd_status.history': { $each: w.entries, $slice: -w.historyLimit } },
    } as Document,
  );
  return res.matchedCount === 1;
}

/**
 * Record that a job's transitions up to `seq` are applied. Final (a finished state) only while the
 * job is still at that transition; if it moved on meanwhile, only the number advances.
 */
export async function markStatusApplied(
  store: Store,
  jobId: JobId,
  seq: number,
  state: JobState,
): Promise<void> {
  const final = FINISHED_STATES.includes(state);
  const res = await store.jobs.updateOne(
    { _id: jobId, seq },
    {
      $set: {
        datasetStatusSeq: seq,
        datasetStatusState: state,
        ...(final ? { datasetStatusFinal: true } : {}),
      },
    },
  );
  if (res.matchedCount === 1) return;
  await store.jobs.updateOne(
    { _id: jobId, $or: [{ datasetStatusSeq: { $exists: false } }, { datasetStatusSeq: { $lt: seq } }] },
    { $set: { datasetStatusSeq: seq, datasetStatusState: state } },
  );
}

export function isMigratedJob(job: { tags?: readonly string[] }): boolean {
  return job.tags?.includes(MIGRATION_TAG) ?? false;
}

/** A dataset's jobs, oldest first (at most `limit`). */
export async function jobsOfDataset(store: Store, uuid: string, limit: number): Promise<StoredJob[]> {
  return store.jobs.find({ datasetUuid: uuid }, { sort: { createdAt: 1, _id: 1 }, limit }).toArray();
}

/** A dataset's unfinished jobs (a pipeline still being processed). */
export async function unfinishedJobsOfDataset(store: Store, uuid: string): Promise<StoredJob[]> {
  return store.jobs
    .find(
      { datasetUuid: uuid, state: { $nin: [...FINISHED_STATES] } },
      { projection: { type: 1, state: 1, workflowId: 1 }, limit: 20 },
    )
    .toArray();
}

/** Ids of workflows whose id starts with `prefix` (the pipelines already submitted for a dataset). */
export async function workflowIdsWithPrefix(store: Store, prefix: string): Promise<string[]> {
  const escaped = prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const docs = await store.workflows
    .find({ _id: { $regex: `^${escaped}` } } as Filter<{ _id: string }> as never, { projection: { _id: 1 } })
    .toArray();
  return docs.map((d) => d._id);
}

/**
 * Whether any job with a datasetUuid is not finished-and-applied (`datasetStatusFinal`): while none
 * is, no transition of an existing job can need a status update. Served by the `dataset_status` index.
 */
export async function hasUnfinishedDatasetJobs(store: Store): Promise<boolean> {
  const doc = await store.jobs.findOne(
    { datasetUuid: { $type: 'string' }, datasetStatusFinal: { $ne: true } } as Filter<StoredJob>,
    { projection: { _id: 1 }, hint: 'dataset_status' },
  );
  return doc !== null;
}

/**
 * Wake on job writes that may need a status update. `transitions`: any transition (every transition
 * bumps `seq`), for while some dataset job is unfinished. Without it, only what can make a dataset job
 * unfinished: one inserted with a datasetUuid, or a finished one revived (an operator retry or re-arm
 * removes its `datasetStatusFinal`; no other job carries that field). The service re-reads what is
 * pending, so a wake-up names nothing.
 */
export function watchDatasetTransitions(
  store: Store,
  h: WatchHandlers<true>,
  opts: { transitions: boolean } = { transitions: true },
): Watcher {
  const update = opts.transitions
    ? { operationType: 'update', 'updateDescription.updatedFields.seq': { $exists: true } }
    : { operationType: 'update', 'updateDescription.removedFields': 'datasetStatusFinal' };
  return watchCollection(
    store,
    store.jobs as unknown as Collection<Document>,
    [
      {
        $match: {
          $or: [{ operationType: 'insert', 'fullDocument.datasetUuid': { $type: 'string' } }, update],
        },
      },
      { $project: { operationType: 1 } },
    ],
    // watchCollection drops changes mapped to null.
    () => true,
    h,
  );
}
