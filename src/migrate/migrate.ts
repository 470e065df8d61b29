/**
 * Migration from the legacy service: dry run (plan), apply, validate, rollback. Datasets are walked
 * in _id order in batches (bounded memory). Apply per batch: ledger entries first (each dataset's
 * exact previous field values and the job ids chosen for it), then the jobs and the dataset marks
 * together, then the entries are marked applied; every step is idempotent, so a re-run after a crash at
 * any point completes the pending entries with the same ids and creates nothing twice.
 */
import { newJobId } from '../store/enqueue.js';
import { cancel, jobDocFor, migrationStore as ms, type Store, type StoredJob } from '../store/index.js';
import type { JobId } from '../types.js';
import {
  PLAN_FIELDS,
  planDataset,
  typesDrivenBy,
  type LegacyDataset,
  type Plan,
  type PlanSettings,
  type SkipReason,
} from './plan.js';

export interface MigrateSource extends PlanSettings {
  /** Database of the legacy collection (default: jobd's). */
  legacyDatabase?: string;
  collection: string;
  uuid?: string;
  batchSize: number;
}

export interface PlanSummary {
  total: number;
  byStatus: Record<
    string,
    {
      datasets: number;
      migrate: number;
      jobs: { type: string; priority: number; dependsOn: string[] }[] | null;
    }
  >;
  skipped: Record<
    SkipReason | 'already migrated',
    { count: number; samples: { id: string; uuid: string | null; status: string | null; detail?: string }[] }
  >;
  toMigrate: number;
  jobs: number;
}

type Decision = { d: LegacyDataset; plan: Plan; uuid: string | null; entry?: ms.LedgerEntry };

function idText(v: unknown): string {
  return v !== null && typeof v === 'object' && 'toHexString' in v
    ? (v as { toHexString(): string }).toHexString()
    : String(v);
}

/** Plans one batch against the ledger, the duplicates and the jobs jobd already holds. */
async function decide(
  store: Store,
  batch: LegacyDataset[],
  src: MigrateSource,
  dups: Set<string>,
): Promise<Decision[]> {
  const out: Decision[] = batch.map((d) => {
    const uuid = typeof d.uuid === 'string' && d.uuid.trim() !== '' ? d.uuid.trim() : null;
    let plan = planDataset(d, src);
    if (plan.action === 'migrate' && uuid && dups.has(uuid))
      plan = { action: 'skip', status: plan.status, reason: 'duplicate uuid' };
    return { d, plan, uuid };
  });
  const uuids = out.filter((x) => x.plan.action === 'migrate').map((x) => x.uuid!);
  // Both lookups at once (own jobs only matter for a uuid without a ledger entry).
  const [entries, own] = await Promise.all([
    ms.ledgerEntries(store, uuids),
    ms.uuidsWithOwnJobs(store, uuids),
  ]);
  for (const x of out) {
    if (x.plan.action !== 'migrate') continue;
    const e = entries.get(x.uuid!);
    if (e) x.entry = e;
    else if (own.has(x.uuid!))
      x.plan = { action: 'skip', status: x.plan.status, reason: 'already has a jobd job' };
  }
  return out;
}

/** The dataset fields the migration reads: what the plan needs and what the ledger keeps. */
const READ_FIELDS = [...PLAN_FIELDS, ...ms.TOUCHED_FIELDS];

async function* walk(store: Store, src: MigrateSource): AsyncGenerator<LegacyDataset[]> {
  const coll = ms.legacyCollection(store, src.legacyDatabase, src.collection);
  const fetch = (after: unknown) =>
    ms.legacyBatch(coll, {
      after,
      limit: src.batchSize,
      fields: READ_FIELDS,
      ...(src.uuid !== undefined ? { uuid: src.uuid } : {}),
    }) as Promise<LegacyDataset[]>;
  let next = fetch(undefined);
  for (;;) {
    const batch = await next;
    if (batch.length === 0) return;
    // The next batch is read while this one is worked on (a walker stopped early leaves it unread).
    next = fetch(batch[batch.length - 1]!._id);
    next.catch(() => {});
    yield batch;
  }
}

const SAMPLES = 5;

export async function planMigration(store: Store, src: MigrateSource): Promise<PlanSummary> {
  const coll = ms.legacyCollection(store, src.legacyDatabase, src.collection);
  const dups = await ms.duplicateUuids(coll, src.uuid);
  const s: PlanSummary = {
    total: 0,
    byStatus: {},
    skipped: {} as PlanSummary['skipped'],
    toMigrate: 0,
    jobs: 0,
  };
  const skip = (reason: SkipReason | 'already migrated', x: Decision, detail?: string) => {
    const g = (s.skipped[reason] ??= { count: 0, samples: [] });
    g.count++;
    if (g.samples.length < SAMPLES)
      g.samples.push({
        id: idText(x.d._id),
        uuid: x.uuid,
        status: typeof x.d.status === 'string' ? x.d.status : null,
        ...(detail ? { detail } : {}),
      });
  };
  for await (const batch of walk(store, src)) {
    for (const x of await decide(store, batch, src, dups)) {
      s.total++;
      const status = typeof x.d.status === 'string' ? x.d.status : '(none)';
      const row = (s.byStatus[status] ??= { datasets: 0, migrate: 0, jobs: null });
      row.datasets++;
      if (x.plan.action === 'skip') skip(x.plan.reason, x, x.plan.detail);
      else if (x.entry?.state === 'applied') skip('already migrated', x);
      else {
        row.migrate++;
        s.toMigrate++;
        s.jobs += x.plan.jobs.length;
        row.jobs ??= x.plan.jobs.map((j) => ({ type: j.type, priority: j.priority, dependsOn: j.dependsOn }));
      }
    }
  }
  return s;
}

export interface ApplyResult {
  datasets: number;
  jobs: number;
  completedPending: number;
  skipped: number;
}

export async function applyMigration(
  store: Store,
  src: MigrateSource,
  opts: { now: () => Date; onProgress?(done: number): void },
): Promise<ApplyResult> {
  const coll = ms.legacyCollection(store, src.legacyDatabase, src.collection);
  const dups = await ms.duplicateUuids(coll, src.uuid);
  const r: ApplyResult = { datasets: 0, jobs: 0, completedPending: 0, skipped: 0 };
  let seen = 0;
  for await (const batch of walk(store, src)) {
    const now = opts.now();
    const decisions = await decide(store, batch, src, dups);
    const newEntries: ms.LedgerEntry[] = [];
    const todo: { x: Decision; entry: ms.LedgerEntry; plan: Extract<Plan, { action: 'migrate' }> }[] = [];
    for (const x of decisions) {
      if (x.plan.action !== 'migrate' || x.entry?.state === 'applied') {
        r.skipped++;
        continue;
      }
      let entry = x.entry;
      if (!entry) {
        const previous: Record<string, ms.PreviousValue> = {};
        for (const f of ms.RESTORED_FIELDS)
          previous[f] = f in x.d ? { present: true, value: x.d[f] } : { present: false };
        entry = {
          _id: x.uuid!,
          datasetId: x.d._id,
          legacyStatus: x.plan.status,
          state: 'pending',
          jobIds: x.plan.jobs.map(() => newJobId()),
          workflowId: x.plan.jobs.length > 1 ? `legacy-${x.uuid}` : null,
          previous,
          createdAt: now,
          appliedAt: null,
        };
        newEntries.push(entry);
      } else r.completedPending++;
      todo.push({ x, entry, plan: x.plan });
    }
    // 1. the ledger (a re-run keeps an existing entry: its ids and previous values stand)
    await ms.insertLedgerEntries(store, newEntries);
    // 2. the jobs, with the ids the ledger holds
    const jobs: StoredJob[] = [];
    const workflows: ms.WorkflowSeed[] = [];
    for (const { x, entry, plan } of todo) {
      const ids = new Map(plan.jobs.map((j, i) => [j.key, entry.jobIds[i]!]));
      plan.jobs.forEach((j, i) => {
        const doc = jobDocFor(
          {
            type: j.type,
            params: j.params,
            priority: j.priority,
            runAt: now,
            maxAttempts: null,
            timeoutMs: null,
            datasetUuid: x.uuid!,
            tags: [ms.MIGRATION_TAG],
            waiting: j.dependsOn.length > 0,
          },
          now,
        );
        const deps = j.dependsOn.map((k) => ids.get(k)!);
        jobs.push({
          ...doc,
          _id: entry.jobIds[i]!,
          ...(entry.workflowId ? { workflowId: entry.workflowId, workflowKey: j.key } : {}),
          ...(deps.length ? { dependsOn: deps, depsLeft: deps.length, waitingFor: 'dependencies' } : {}),
        });
      });
      if (entry.workflowId) {
        workflows.push({
          _id: entry.workflowId,
          name: `legacy dataset ${x.uuid}`,
          state: 'running',
          jobCount: plan.jobs.length,
          keys: Object.fromEntries(ids),
          createdAt: now,
          finishedAt: null,
        });
      }
    }
    // 3. the datasets' marks, written with the jobs: both carry the ids the ledger already holds, so a
    // crash between them leaves a pending entry that a re-run completes. 4. the entries are applied.
    await Promise.all([
      ms.insertMigratedJobs(store, jobs, workflows, now),
      ms.markDatasets(
        coll,
        todo.map(({ x, entry }) => ({
          datasetId: x.d._id,
          fields: {
            jobd_job_ids: entry.jobIds,
            jobd_workflow_id: entry.workflowId,
            jobd_migrated_at: entry.createdAt,
          },
        })),
      ),
    ]);
    await ms.markApplied(
      store,
      todo.map((t) => t.entry._id),
      now,
    );
    r.datasets += todo.length;
    r.jobs += jobs.length;
    seen += batch.length;
    opts.onProgress?.(seen);
  }
  return r;
}

export interface RollbackResult {
  datasets: number;
  jobsDeleted: number;
  cancelled: number;
}

export async function rollbackMigration(
  store: Store,
  src: MigrateSource,
  opts: { now: () => Date; dryRun?: boolean; onProgress?(done: number): void },
): Promise<RollbackResult> {
  const coll = ms.legacyCollection(store, src.legacyDatabase, src.collection);
  const r: RollbackResult = { datasets: 0, jobsDeleted: 0, cancelled: 0 };
  let after: string | undefined;
  for (;;) {
    const entries = await ms.ledgerBatch(store, {
      ...(after !== undefined ? { after } : {}),
      limit: src.batchSize,
      ...(src.uuid !== undefined ? { uuid: src.uuid } : {}),
    });
    if (entries.length === 0) break;
    const ids = entries.flatMap((e) => e.jobIds);
    const workflowIds = entries.map((e) => e.workflowId).filter((w): w is string => !!w);
    if (opts.dryRun) {
      const states = await ms.jobStatesByIds(store, ids);
      r.cancelled += ids.filter((id) => states.get(id)?.state === 'running').length;
      r.jobsDeleted += states.size;
    } else {
      // Every job that is not running goes at once (guarded on the state, so one claimed meanwhile
      // stays); the running ones are cancelled first, so their daemons kill the children, then go too.
      const gone = await ms.deleteMigratedJobs(store, ids, [], { notRunning: true });
      r.jobsDeleted += gone;
      // Every id deleted: nothing is left to cancel (a re-run, or a running job, reads what is left).
      const left = gone === ids.length ? new Map() : await ms.jobStatesByIds(store, ids);
      for (const [id, s] of left) {
        if (s.state !== 'running') continue;
        try {
          await cancel(store, id, {
            now: opts.now(),
            by: 'jobctl migrate rollback',
            reason: 'migration rolled back',
          });
          r.cancelled++;
        } catch {
          /* finished meanwhile: deleted below all the same */
        }
      }
      r.jobsDeleted += await ms.deleteMigratedJobs(store, left.size ? [...left.keys()] : [], workflowIds);
      await ms.restoreDatasets(coll, entries);
      await ms.deleteLedgerEntries(
        store,
        entries.map((e) => e._id),
      );
    }
    r.datasets += entries.length;
    opts.onProgress?.(r.datasets);
    after = entries[entries.length - 1]!._id;
    if (src.uuid !== undefined) break;
  }
  return r;
}

export interface ValidationReport {
  ok: boolean;
  missingJobs: { uuid: string; status: string }[];
  jobsWithoutDataset: { jobId: JobId; uuid: string | null }[];
  statusDisagrees: {
    uuid: string;
    status: string | null;
    jobs: { id: JobId; type: string; state: string }[];
  }[];
  ledgerWithoutJobs: { uuid: string; missing: JobId[] }[];
}

const LIST_MAX = 100;

export async function validateMigration(store: Store, src: MigrateSource): Promise<ValidationReport> {
  const coll = ms.legacyCollection(store, src.legacyDatabase, src.collection);
  const dups = await ms.duplicateUuids(coll, src.uuid);
  const rep: ValidationReport = {
    ok: true,
    missingJobs: [],
    jobsWithoutDataset: [],
    statusDisagrees: [],
    ledgerWithoutJobs: [],
  };
  const push = <T>(list: T[], v: T) => {
    rep.ok = false;
    if (list.length < LIST_MAX) list.push(v);
  };
  for await (const batch of walk(store, src)) {
    const decisions = await decide(store, batch, src, dups);
    // One query for the batch's jobs, not one per dataset.
    const allStates = await ms.jobStatesByIds(
      store,
      decisions.flatMap((x) =>
        x.plan.action === 'migrate' && x.entry?.state === 'applied' ? x.entry.jobIds : [],
      ),
    );
    for (const x of decisions) {
      if (x.plan.action !== 'migrate') continue;
      if (x.entry?.state !== 'applied') {
        push(rep.missingJobs, { uuid: x.uuid!, status: x.plan.status });
        continue;
      }
      const states = new Map(
        x.entry.jobIds.flatMap((id) => {
          const st = allStates.get(id);
          return st ? [[id, st] as const] : [];
        }),
      );
      const missing = x.entry.jobIds.filter((id) => !states.has(id));
      if (missing.length) push(rep.ledgerWithoutJobs, { uuid: x.uuid!, missing });
      const status = typeof x.d.status === 'string' ? x.d.status : null;
      const driven = status ? typesDrivenBy(status) : null;
      const jobs = [...states].map(([id, s]) => ({ id, type: s.type, state: s.state }));
      const agrees =
        status === 'done'
          ? jobs.every((j) => j.state === 'completed')
          : driven !== null && jobs.some((j) => driven.includes(j.type));
      if (!agrees && jobs.length) push(rep.statusDisagrees, { uuid: x.uuid!, status, jobs });
    }
  }
  // Ledger entries whose dataset is gone, and migrated jobs without a dataset.
  let after: string | undefined;
  for (;;) {
    const jobs = await ms.migratedJobsBatch(store, after, src.batchSize);
    if (jobs.length === 0) break;
    const uuids = [
      ...new Set(jobs.map((j) => j.datasetUuid).filter((u): u is string => typeof u === 'string')),
    ];
    const present = await ms.existingUuids(coll, uuids);
    for (const j of jobs) {
      if (src.uuid !== undefined && j.datasetUuid !== src.uuid) continue;
      if (!j.datasetUuid || !present.has(j.datasetUuid))
        push(rep.jobsWithoutDataset, { jobId: j._id, uuid: j.datasetUuid ?? null });
    }
    after = jobs[jobs.length - 1]!._id;
  }
  return rep;
}
