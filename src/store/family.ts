/**
 * Parents and children, dependencies and their results: what a claimed job is told about its family
 * (ctx.dependencies, ctx.children), and the writing of the children a handler spawned.
 */
import { MongoBulkWriteError } from 'mongodb';
import type { ChildInfo, JobDoc, JobId } from '../types.js';
import { newJobDoc } from './enqueue.js';
import { appendEvents, event } from './events.js';
import { releaseAfter } from './release.js';
import type { NewJob } from './newJob.js';
import type { Store, StoredJob } from './types.js';
import { UNFINISHED_STATES } from './workflows.js';

export interface Family {
  resumes: number;
  dependencies?: Record<string, unknown>;
  children?: ChildInfo[];
}

/** The key a child was spawned under (the last part of its spawn key). */
function childKey(spawnKey: string | undefined, id: JobId): string {
  if (!spawnKey) return id;
  return spawnKey.slice(spawnKey.indexOf('/', spawnKey.indexOf('/') + 1) + 1);
}

function spawnOrder(a: StoredJob, b: StoredJob): number {
  const pa = (a.spawnKey ?? '').split('/');
  const pb = (b.spawnKey ?? '').split('/');
  const ra = Number(pa[1] ?? 0) - Number(pb[1] ?? 0);
  if (ra !== 0) return ra;
  // Keys in natural order: c2 before c10, 2 before 10.
  return pa.slice(2).join('/').localeCompare(pb.slice(2).join('/'), 'en', { numeric: true });
}

/**
 * A job's own dependencies: dependsOn, except on a parent that suspended, whose dependsOn lists its
 * children and whose own dependencies wait in `upstream`.
 */
export function ownDependencies(j: Pick<JobDoc, 'dependsOn' | 'upstream' | 'resumes'>): JobId[] | undefined {
  if ((j.resumes ?? 0) > 0) return j.upstream;
  return j.dependsOn;
}

/**
 * The families of a batch of claimed jobs, with one query for all dependencies' results and one for
 * all resumed parents' children. Jobs with neither are left out of the map.
 */
export async function familiesOf(store: Store, jobs: JobDoc[]): Promise<Map<JobId, Family>> {
  const out = new Map<JobId, Family>();
  const parents = jobs.filter((j) => (j.resumes ?? 0) > 0);
  // A resumed parent that had dependencies is told both: its dependencies' results and its children.
  const dependents = jobs.filter((j) => (ownDependencies(j)?.length ?? 0) > 0);
  if (dependents.length > 0) {
    const ids = [...new Set(dependents.flatMap((j) => ownDependencies(j)!))];
    const docs = await store.jobs
      .find({ _id: { $in: ids } }, { projection: { result: 1, workflowKey: 1, state: 1 } })
      .toArray();
    const byId = new Map(docs.map((d) => [d._id, d]));
    for (const j of dependents) {
      const dependencies: Record<string, unknown> = {};
      for (const id of ownDependencies(j)!) {
        const d = byId.get(id);
        dependencies[d?.workflowKey ?? id] = d?.state === 'completed' ? d.result : undefined;
      }
      out.set(j._id, { resumes: j.resumes ?? 0, dependencies });
    }
  }
  if (parents.length > 0) {
    const kids = await store.jobs
      .find(
        { parentId: { $in: parents.map((p) => p._id) } },
        { projection: { parentId: 1, spawnKey: 1, type: 1, state: 1, result: 1, lastError: 1 } },
      )
      .toArray();
    kids.sort(spawnOrder);
    for (const p of parents) {
      const children: ChildInfo[] = kids
        .filter((k) => k.parentId === p._id)
        .map((k) => ({
          id: k._id,
          key: childKey(k.spawnKey, k._id),
          type: k.type,
          state: k.state,
          ...(k.state === 'completed' ? { result: k.result } : {}),
          ...(k.lastError
            ? { error: { name: k.lastError.name, code: k.lastError.code, message: k.lastError.message } }
            : {}),
        }));
      out.set(p._id, { ...out.get(p._id), resumes: p.resumes ?? 0, children });
    }
  }
  return out;
}

/**
 * Write the children a parent spawned (ids fixed by their spawn keys: children already written by an
 * earlier run of the same attempt are kept as they are). Returns what a parent that waits, waits for.
 */
export async function insertChildren(
  store: Store,
  parentId: JobId,
  children: NewJob[],
  now: Date,
): Promise<JobId[]> {
  if (children.length > 0) {
    const docs = children.map((c) => newJobDoc({ ...c, parentId }, now));
    let written = docs;
    try {
      await store.jobs.insertMany(docs, { ordered: false });
    } catch (err) {
      if (!(err instanceof MongoBulkWriteError)) throw err;
      const errors = Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors];
      if (!errors.every((e) => e.code === 11000)) throw err;
      const dup = new Set(errors.map((e) => e.index));
      written = docs.filter((_, i) => !dup.has(i));
    }
    await appendEvents(
      store,
      written.map((d) => event(d._id, null, d.state, now, 0, null, `spawned by ${parentId}`, 1)),
    );
    // Children that wait on siblings: a sibling may have finished already (a repeated run).
    const withDeps = written.filter((d) => d.dependsOn);
    if (withDeps.length > 0)
      await releaseAfter(
        store,
        withDeps.map((d) => d._id),
        now,
      );
  }
  const open = await store.jobs
    .find({ parentId, state: { $in: [...UNFINISHED_STATES] } }, { projection: { _id: 1 } })
    .toArray();
  // This run's children whatever their state (a repeated run may find them finished already, and a
  // failure among them must still count), plus earlier children still unfinished.
  return [...new Set([...children.map((c) => c.id!), ...open.map((d) => d._id)])];
}
