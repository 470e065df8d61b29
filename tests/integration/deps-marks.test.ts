/**
 * A job with no one to tell (no dependents, workflow or parent when claimed) settles without a release;
 * a dependent enqueued while it runs, or one written by an older version, is still released.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  claimBatch,
  enqueue,
  get,
  markOlderDependents,
  noOneToTell,
  releaseAfter,
  settleManyIfRunning,
  type Settlement,
} from '../../src/store/index.js';
import type { JobDoc } from '../../src/types.js';
import { newJob, openStoreFixture, type StoreFixture } from './store-helpers.js';

describe('settling without a release', () => {
  let f: StoreFixture;
  beforeAll(async () => {
    f = await openStoreFixture('depmarks');
  });
  afterAll(async () => {
    await f.close();
  });
  const now = () => new Date();
  const ctx = () => ({ owner: 'w1', now: now(), errorHistory: 5 });
  const add = async (type: string, deps: string[] = []) =>
    (await enqueue(f.store, newJob(type, {}, { dependsOn: deps, maxAttempts: 1 }, now()), now())).job;
  const claim = async (type: string): Promise<JobDoc> => {
    const [j] = await claimBatch(f.store, {
      owner: 'w1',
      types: [type],
      leaseMs: 60_000,
      now: now(),
      limit: 1,
    });
    return j!;
  };
  const complete = (j: JobDoc): Settlement => ({
    kind: 'complete',
    jobId: j._id,
    token: j.lease!.token,
    attempt: j.attempts,
    seq: j.seq,
    result: null,
    ...noOneToTell(j),
  });

  it('a lone job completes with no releasePending; a job with a dependent keeps it', async () => {
    const lone = await add('a');
    const a = await claim('a');
    expect(a._id).toBe(lone._id);
    const s = complete(a);
    expect(s.noDependents).toBe(true);
    const r = await settleManyIfRunning(f.store, [s], ctx());
    expect(r.landed).toEqual([a._id]);
    const done = await get(f.store, a._id);
    expect(done!.state).toBe('completed');
    expect(done!.releasePending).toBeUndefined();

    const dep = await add('b');
    const waiter = await add('c', [dep._id]);
    expect(waiter.state).toBe('waiting');
    expect(waiter.dependenciesMarked).toBe(true);
    const b = await claim('b');
    expect(b.hasDependents).toBe(true);
    expect(noOneToTell(b)).toEqual({});
  });

  it('a dependent enqueued while its dependency runs marks it: the settle goes the full way', async () => {
    await add('noop');
    const a = await claim('noop');
    const s = complete(a);
    expect(s.noDependents).toBe(true);
    // Enqueued after the claim: the daemon's copy of the job does not know of it.
    const waiter = await add('echo', [a._id]);
    expect(waiter.state).toBe('waiting');
    const r = await settleManyIfRunning(f.store, [s], ctx());
    expect(r.landed).toEqual([a._id]);
    expect(s.noDependents).toBe(false);
    expect((await get(f.store, a._id))!.releasePending).toBe(true);
    const rel = await releaseAfter(f.store, [a._id], now());
    expect(rel.released).toEqual([waiter._id]);
    expect((await get(f.store, waiter._id))!.state).toBe('queued');
  });

  it('a dependency settled before the dependent was enqueued is seen by its own check', async () => {
    await add('sleep');
    const a = await claim('sleep');
    await settleManyIfRunning(f.store, [complete(a)], ctx());
    const waiter = await add('fail', [a._id]);
    expect(waiter.state).toBe('queued');
  });

  it('the sweep marks and releases dependents written by older versions', async () => {
    // As an older version wrote them: no marks on either side.
    const base = newJob('a', {}, { maxAttempts: 1 }, now());
    const dep = await add(base.type);
    await f.store.jobs.updateOne({ _id: dep._id }, { $unset: { hasDependents: '' } });
    const waiter = await add('b', [dep._id]);
    await f.store.jobs.updateOne({ _id: waiter._id }, { $unset: { dependenciesMarked: '' } });
    await f.store.jobs.updateOne({ _id: dep._id }, { $unset: { hasDependents: '' } });
    const a = await claim('a');
    expect(a._id).toBe(dep._id);
    const s = complete(a);
    expect(s.noDependents).toBe(true);
    await settleManyIfRunning(f.store, [s], ctx());
    expect((await get(f.store, waiter._id))!.state).toBe('waiting');
    const r = await markOlderDependents(f.store, now());
    expect(r!.released).toEqual([waiter._id]);
    expect((await get(f.store, waiter._id))!.dependenciesMarked).toBe(true);
    expect(await markOlderDependents(f.store, now())).toBeNull();
  });
});
