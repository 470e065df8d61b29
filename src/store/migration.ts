/**
 * The database side of the legacy migration: reading legacy datasets, the ledger, writing jobs with
 * ids chosen in advance, restoring datasets. Every write is idempotent, so a re-run after a crash at
 * any point finishes the work with no duplicates (see src/migrate/).
 */
import { MongoBulkWriteError, type AnyBulkWriteOperation, type Collection, type Document } from 'mongodb';
import type { JobId } from '../types.js';
import { appendEvents, event } from './events.js';
import type { Store, StoredJob } from './types.js';

/** The dataset fields the migration sets (the ledger keeps their exact previous values). */
export const TOUCHED_FIELDS = ['jobd_job_ids', 'jobd_workflow_id', 'jobd_migrated_at'] as const;
/**
 * The fields a rollback puts back: those the migration sets, and the status its jobs move (with its
 * record, `jobd_status`), so a rollback restores the status as it was before the migration.
 */
export const RESTORED_FIELDS = [...TOUCHED_FIELDS, 'status', 'jobd_status'] as const;

/** A field's value before the migration: absent, or present with this value. */
export type PreviousValue = { present: false } | { present: true; value: unknown };

export interface LedgerEntry {
  /** The dataset's uuid. */
  _id: string;
  datasetId: unknown;
  legacyStatus: string;
  state: 'pending' | 'applied';
  jobIds: JobId[];
  workflowId: string | null;
  previous: Record<string, PreviousValue>;
  createdAt: Date;
  appliedAt?: Date | null;
}

export const LEDGER_COLLECTION = 'migration_ledger';
/** The tag every migrated job carries. */
export const MIGRATION_TAG = 'legacy-migration';

export function ledger(store: Store): Collection<LedgerEntry> {
  return store.db.collection<LedgerEntry>(LEDGER_COLLECTION);
}

export function legacyCollection(
  store: Store,
  database: string | undefined,
  name: string,
): Collection<Document> {
  return (database ? store.client.db(database) : store.db).collection(name);
}

/** Datasets in _id order after `after` (a resumable walk with bounded memory). */
export async function legacyBatch(
  coll: Collection<Document>,
  opts: { after: unknown; limit: number; uuid?: string; fields?: readonly string[] },
): Promise<Document[]> {
  const filter: Document = {};
  if (opts.after !== undefined) filter._id = { $gt: opts.after };
  if (opts.uuid !== undefined) filter.uuid = opts.uuid;
  const projection = opts.fields ? Object.fromEntries(opts.fields.map((f) => [f, 1])) : undefined;
  return coll
    .find(filter, {
      sort: { _id: 1 },
      limit: opts.limit,
      // The whole batch in the first reply (the driver's default first batch is 101 documents).
      batchSize: opts.limit,
      ...(projection ? { projection } : {}),
    })
    .toArray();
}

/**
 * uuids held by more than one dataset, compared as the migration reads them (trimmed): `abc` and
 * ` abc ` name the same dataset, and neither may be migrated over the other. `uuid`: only that one.
 */
export async function duplicateUuids(coll: Collection<Document>, uuid?: string): Promise<Set<string>> {
  const rows = await coll
    .aggregate<{ _id: string }>([
      { $match: { uuid: { $type: 'string' } } },
      { $group: { _id: { $trim: { input: '$uuid' } }, n: { $sum: 1 } } },
      { $match: { n: { $gt: 1 }, _id: uuid !== undefined ? uuid.trim() : { $ne: '' } } },
      { $project: { _id: 1 } },
    ])
    .toArray();
  return new Set(rows.map((r) => r._id));
}

export async function countLegacy(coll: Collection<Document>, uuid?: string): Promise<number> {
  return coll.countDocuments(uuid !== undefined ? { uuid } : {});
}

export async function ledgerEntries(store: Store, uuids: string[]): Promise<Map<string, LedgerEntry>> {
  if (uuids.length === 0) return new Map();
  const docs = await ledger(store)
    .find({ _id: { $in: uuids } })
    .toArray();
  return new Map(docs.map((d) => [d._id, d]));
}

/** Of these uuids, those with jobd jobs not created by the migration. */
export async function uuidsWithOwnJobs(store: Store, uuids: string[]): Promise<Set<string>> {
  if (uuids.length === 0) return new Set();
  const found = await store.jobs.distinct('datasetUuid', {
    datasetUuid: { $in: uuids },
    tags: { $ne: MIGRATION_TAG },
  });
  return new Set(found.filter((u): u is string => typeof u === 'string'));
}

function onlyDuplicates(err: unknown): boolean {
  if (!(err instanceof MongoBulkWriteError)) return false;
  const errors = Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors];
  return errors.length > 0 && errors.every((e) => e.code === 11000);
}

/** insertMany where documents already stored (same _id) are fine. */
async function insertIdempotent<T extends Document>(coll: Collection<T>, docs: T[]): Promise<void> {
  if (docs.length === 0) return;
  try {
    await coll.insertMany(docs as never, { ordered: false });
  } catch (err) {
    if (!onlyDuplicates(err)) throw err;
  }
}

export async function insertLedgerEntries(store: Store, entries: LedgerEntry[]): Promise<void> {
  await insertIdempotent(ledger(store), entries);
}

export interface WorkflowSeed {
  _id: string;
  name: string;
  state: 'running';
  jobCount: number;
  keys: Record<string, JobId>;
  createdAt: Date;
  finishedAt: null;
}

/** Jobs (with their ids set), their 'enqueued' events and their workflows: all idempotent. */
export async function insertMigratedJobs(
  store: Store,
  jobs: StoredJob[],
  workflows: WorkflowSeed[],
  now: Date,
): Promise<void> {
  // Independent and each idempotent (ids chosen in advance, the event numbered): written together.
  await Promise.all([
    insertIdempotent(store.db.collection<WorkflowSeed>('workflows'), workflows),
    insertIdempotent(store.jobs, jobs),
    appendEvents(
      store,
      jobs.map((j) => event(j._id, null, j.state, now, 0, null, 'created by the legacy migration', 1)),
    ),
  ]);
}

export async function markDatasets(
  coll: Collection<Document>,
  sets: { datasetId: unknown; fields: Record<string, unknown> }[],
): Promise<void> {
  if (sets.length === 0) return;
  await coll.bulkWrite(
    sets.map(
      (s): AnyBulkWriteOperation<Document> =>
        ({
          updateOne: { filter: { _id: s.datasetId } as Document, update: { $set: s.fields } },
        }) as AnyBulkWriteOperation<Document>,
    ),
    { ordered: false },
  );
}

export async function markApplied(store: Store, uuids: string[], now: Date): Promise<void> {
  if (uuids.length === 0) return;
  await ledger(store).updateMany(
    { _id: { $in: uuids }, state: 'pending' },
    { $set: { state: 'applied', appliedAt: now } },
  );
}

/** Ledger entries in _id order after `after`. */
export async function ledgerBatch(
  store: Store,
  opts: { after?: string; limit: number; uuid?: string },
): Promise<LedgerEntry[]> {
  const filter: Document = {};
  if (opts.after !== undefined) filter._id = { $gt: opts.after };
  if (opts.uuid !== undefined) filter._id = opts.uuid;
  return ledger(store)
    .find(filter, { sort: { _id: 1 }, limit: opts.limit, batchSize: opts.limit })
    .toArray();
}

/** Put each dataset's touched fields back exactly: $set what was there, $unset what was not. */
export async function restoreDatasets(coll: Collection<Document>, entries: LedgerEntry[]): Promise<void> {
  if (entries.length === 0) return;
  await coll.bulkWrite(
    entries.map((e): AnyBulkWriteOperation<Document> => {
      const set: Document = {};
      const unset: Document = {};
      for (const [field, prev] of Object.entries(e.previous)) {
        if (prev.present) set[field] = prev.value;
        else unset[field] = '';
      }
      return {
        updateOne: {
          filter: { _id: e.datasetId } as Document,
          update: {
            ...(Object.keys(set).length ? { $set: set } : {}),
            ...(Object.keys(unset).length ? { $unset: unset } : {}),
          },
        },
      };
    }),
    { ordered: false },
  );
}

/**
 * Delete the given migrated jobs (with `notRunning`, only those not running), their events first, then
 * the workflows; returns jobs deleted.
 */
export async function deleteMigratedJobs(
  store: Store,
  jobIds: JobId[],
  workflowIds: string[],
  opts: { notRunning?: boolean } = {},
): Promise<number> {
  let deleted = 0;
  if (jobIds.length > 0) {
    await Promise.all([
      store.events.deleteMany({ jobId: { $in: jobIds } }),
      store.logs.deleteMany({ jobId: { $in: jobIds } }),
    ]);
    const res = await store.jobs.deleteMany({
      _id: { $in: jobIds },
      tags: MIGRATION_TAG,
      ...(opts.notRunning ? { state: { $ne: 'running' } } : {}),
    });
    deleted = res.deletedCount;
  }
  if (workflowIds.length)
    await store.db.collection('workflows').deleteMany({ _id: { $in: workflowIds } } as Document);
  return deleted;
}

export async function deleteLedgerEntries(store: Store, uuids: string[]): Promise<void> {
  if (uuids.length) await ledger(store).deleteMany({ _id: { $in: uuids } });
}

/** Jobs by id with their state and type. */
export async function jobStatesByIds(
  store: Store,
  ids: JobId[],
): Promise<Map<JobId, { state: string; type: string }>> {
  if (ids.length === 0) return new Map();
  const docs = await store.jobs.find({ _id: { $in: ids } }, { projection: { state: 1, type: 1 } }).toArray();
  return new Map(docs.map((d) => [d._id, { state: d.state, type: d.type }]));
}

/** Migrated jobs, in _id order after `after` (datasetUuid only). */
export async function migratedJobsBatch(store: Store, after: string | undefined, limit: number) {
  return store.jobs
    .find(
      { tags: MIGRATION_TAG, ...(after !== undefined ? { _id: { $gt: after } } : {}) },
      { projection: { _id: 1, datasetUuid: 1 }, sort: { _id: 1 }, limit },
    )
    .toArray();
}

export async function existingUuids(coll: Collection<Document>, uuids: string[]): Promise<Set<string>> {
  if (uuids.length === 0) return new Set();
  const found = await coll.distinct('uuid', { uuid: { $in: uuids } });
  return new Set(found as string[]);
}
