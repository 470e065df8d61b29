/** Dependencies (a DAG): release order, results flowing, failure policies, re-arm, bad input. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.js';
import { cancel, enqueue, eventsOf, get, retry } from '../../src/store/index.js';
import type { JobDoc } from '../../src/types.js';
import type { Daemon } from '../../src/worker/daemon.js';
import { fixtureHandler, startTestDaemon } from './daemon-helpers.js';
import { newJob, openStoreFixture, type StoreFixture } from './store-helpers.js';

const jobTypes = { combine: { handler: fixtureHandler('combine.mjs'), maxAttempts: 1 } };

describe('dependencies', () => {
  let f: StoreFixture;
  let d: Daemon | null = null;
  beforeEach(async () => {
    f = await openStoreFixture('deps');
  });
  afterEach(async () => {
    await d?.stop({ graceMs: 0 });
    d = null;
    await f.close();
  });
  const now = () => new Date();
  const add = async (name: string, deps: string[] = [], extra: Record<string, unknown> = {}) =>
    (
      await enqueue(
        f.store,
        newJob('combine', { name, ...extra }, { dependsOn: deps, maxAttempts: 1, ...extra }, now()),
        now(),
      )
    ).job;
  async function finished(id: string): Promise<JobDoc> {
    for (;;) {
      const j = await get(f.store, id);
      if (j && ['completed', 'failed', 'cancelled'].includes(j.state)) return j;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('diamond: A → B, A → C, B and C → D run in order and D receives B and C results', async () => {
    const a = await add('A');
    const b = await add('B', [a._id]);
    const c = await add('C', [a._id]);
    const dd = await add('D', [b._id, c._id]);
    expect(dd.state).toBe('waiting');
    d = await startTestDaemon(f, { jobTypes });
    const done = await finished(dd._id);
    expect(done.state).toBe('completed');
    const [A, B, C, D] = await Promise.all([a, b, c, dd].map((j) => get(f.store, j._id)));
    expect(B!.startedAt!.getTime()).toBeGreaterThanOrEqual(A!.finishedAt!.getTime());
    expect(C!.startedAt!.getTime()).toBeGreaterThanOrEqual(A!.finishedAt!.getTime());
    expect(D!.startedAt!.getTime()).toBeGreaterThanOrEqual(
      Math.max(B!.finishedAt!.getTime(), C!.finishedAt!.getTime()),
    );
    const deps = (D!.result as { deps: Record<string, { name: string }> }).deps;
    expect(deps[b._id]!.name).toBe('B');
    expect(deps[c._id]!.name).toBe('C');
    expect((await eventsOf(f.store, dd._id)).map((e) => `${e.from}>${e.to}`)).toEqual([
      'null>waiting',
      'waiting>queued',
      'queued>running',
      'running>completed',
    ]);
  });

  it('a job enqueued after its dependency completed is released at once', async () => {
    d = await startTestDaemon(f, { jobTypes });
    const a = await add('A');
    await finished(a._id);
    const b = await add('B', [a._id]);
    expect(b.state).not.toBe('waiting');
    expect((await finished(b._id)).state).toBe('completed');
  });

  it('failure policies: fail, skip, ignore; an operator retry re-arms the failed and skipped', async () => {
    const a = await add('A', [], { fail: true });
    const pf = await add('F', [a._id]);
    const ps = await add('S', [a._id], { onDependencyFailure: 'skip' });
    const pi = await add('I', [a._id], { onDependencyFailure: 'ignore' });
    const below = await add('below', [pf._id]);
    d = await startTestDaemon(f, { jobTypes });
    const depFailed = d.events.waitFor('job:dependency-failed', (e) => e.jobId === below._id);
    const F = await finished(pf._id);
    expect(F.state).toBe('failed');
    expect(F.lastError).toMatchObject({ code: 'JOBD_DEPENDENCY_FAILED' });
    expect(F.lastError!.message).toContain(a._id);
    const S = await finished(ps._id);
    expect(S.state).toBe('cancelled');
    expect(S.lastError!.message).toContain(a._id);
    expect((await finished(pi._id)).state).toBe('completed');
    await depFailed;
    expect((await get(f.store, below._id))!.state).toBe('failed');

    // Retry A without the failure: F, S and (through F) below wait again, then run.
    await f.store.jobs.updateOne({ _id: a._id }, { $set: { 'params.fail': false } });
    await retry(f.store, a._id, { now: now() });
    const rearmed = await get(f.store, pf._id);
    expect(['waiting', 'queued', 'running', 'completed']).toContain(rearmed!.state);
    expect((await finished(a._id)).state).toBe('completed');
    expect((await finished(pf._id)).state).toBe('completed');
    expect((await finished(ps._id)).state).toBe('completed');
    expect((await finished(below._id)).state).toBe('completed');
    expect((await eventsOf(f.store, pf._id)).map((e) => `${e.from}>${e.to}`)).toEqual([
      'null>waiting',
      'waiting>failed',
      'failed>waiting',
      'waiting>queued',
      'queued>running',
      'running>completed',
    ]);
  });

  it('cancelling a dependency fails its dependents (policy fail)', async () => {
    const a = await add('A', [], { fail: true });
    const b = await add('B', [a._id]);
    await cancel(f.store, a._id, { now: now() });
    expect((await get(f.store, b._id))!.state).toBe('failed');
  });

  it('refuses unknown dependencies and writes nothing', async () => {
    const before = await f.store.jobs.countDocuments();
    await expect(add('X', ['0123456789abcdef01234567'])).rejects.toThrow(ValidationError);
    await expect(add('X', ['0123456789abcdef01234567'])).rejects.toThrow(
      /do not exist: 0123456789abcdef01234567/,
    );
    expect(await f.store.jobs.countDocuments()).toBe(before);
  });
});
