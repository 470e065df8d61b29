/**
 * Jobs with dependsOn written by versions that did not mark their dependencies `hasDependents`: such a
 * dependency, settled by this version, would skip its release and leave its dependents waiting. The
 * releaser sweep finds them (a range of the waiting jobs), marks their dependencies, checks each one's
 * dependencies at once (one that finished unmarked released no one), then marks the job itself.
 */
import type { JobId } from '../types.js';
import { releaseAfter, type ReleaseResult } from './release.js';
import type { Store } from './types.js';

/** Jobs handled per call. */
const CHUNK = 500;

export async function markOlderDependents(store: Store, now: Date): Promise<ReleaseResult | null> {
  const docs = await store.jobs
    .find(
      { state: 'waiting', dependsOn: { $exists: true }, dependenciesMarked: { $exists: false } },
      { projection: { _id: 1, dependsOn: 1 }, limit: CHUNK },
    )
    .toArray();
  if (docs.length === 0) return null;
  const deps = [...new Set(docs.flatMap((d) => d.dependsOn ?? []))];
  const ids: JobId[] = docs.map((d) => d._id);
  // Marked first: a dependency settled after this is released as usual, one settled before is seen
  // finished by the check below.
  if (deps.length > 0) await store.jobs.updateMany({ _id: { $in: deps } }, { $set: { hasDependents: true } });
  const r = await releaseAfter(store, ids, now);
  await store.jobs.updateMany({ _id: { $in: ids } }, { $set: { dependenciesMarked: true } });
  return r;
}
