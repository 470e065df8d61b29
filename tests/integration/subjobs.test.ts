/** Parent jobs and sub-jobs: spawn, wait without a slot, resume with the children, policies, cascade. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cancel, enqueue, eventsOf, get, jobTree } from '../../src/store/index.js';
import type { JobDoc } from '../../src/types.js';
import type { Daemon } from '../../src/worker/daemon.js';
import { fixtureHandler, startTestDaemon } from './daemon-helpers.js';
import { newJob, openStoreFixture, type StoreFixture } from './store-helpers.js';
import { waitUntil } from '../helpers/waitFor.js';

const jobTypes = {
  combine: { handler: fixtureHandler('combine.mjs'), maxAttempts: 1 },
  parent: { handler: fixtureHandler('parent.mjs'), maxAttempts: 1 },
  gate: { handler: fixtureHandler('gate.mjs'), maxAttempts: 1 },
  parentContinue: { handler: fixtureHandler('parentContinue.mjs'), maxAttempts: 1 },
  parentChain: { handler: fixtureHandler('parentChain.mjs'), maxAttempts: 1 },
};

describe('sub-jobs', () => {
  let f: StoreFixture;
  let d: Daemon | null = null;
  beforeEach(async () => {
    f = await openStoreFixture('subjobs');
  });
  afterEach(async () => {
    await d?.stop({ graceMs: 0 });
    d = null;
    await f.close();
  });
  const now = () => new Date();
  const finished = async (id: string): Promise<JobDoc> =>
    new Promise((resolve, reject) => {
      const tick = async (): Promise<void> => {
        try {
          const j = await get(f.store, id);
          if (j && ['completed', 'failed', 'cancelled'].includes(j.state)) return resolve(j);
          setTimeout(() => void tick(), 25);
        } catch (err) {
          reject(err as Error);
        }
      };
      void tick();
    });

  it('a parent spawns 50 children and waits; concurrency 1 completes the tree (the waiting parent holds no slot)', async () => {
    d = await startTestDaemon(f, { jobTypes, worker: { concurrency: 1, claimBatchSize: 10 } });
    const suspended = d.events.waitFor('job:suspended');
    const { job } = await enqueue(f.store, newJob('parent', { children: 50 }, {}, now()), now());
    expect((await suspended).children).toHaveLength(50);
    const done = await finished(job._id);
    expect(done.state).toBe('completed');
    expect(done.resumes).toBe(1);
    expect(done.attempts).toBe(1);
    const r = done.result as {
      resumed: boolean;
      children: { key: string; state: string; result: { name: string } }[];
    };
    expect(r.resumed).toBe(true);
    expect(r.children.map((c) => c.key)).toEqual(Array.from({ length: 50 }, (_, i) => `c${i}`));
    expect(r.children.every((c) => c.state === 'completed' && c.result.name === c.key)).toBe(true);
    const tree = await jobTree(f.store, job._id);
    expect(tree).toHaveLength(51);
    expect(tree.slice(1).every((c) => c.parentId === job._id)).toBe(true);
    expect((await eventsOf(f.store, job._id)).map((e) => `${e.from}>${e.to}`)).toEqual([
      'null>queued',
      'queued>running',
      'running>waiting',
      'waiting>queued',
      'queued>running',
      'running>completed',
    ]);
  });

  it('a parent with dependencies sees their results again when it resumes with its children', async () => {
    d = await startTestDaemon(f, { jobTypes, worker: { concurrency: 2 } });
    const { job: dep } = await enqueue(f.store, newJob('combine', { name: 'input' }, {}, now()), now());
    const { job } = await enqueue(
      f.store,
      newJob('parent', { children: 2 }, { dependsOn: [dep._id] }, now()),
      now(),
    );
    const done = await finished(job._id);
    expect(done.state).toBe('completed');
    expect(done.resumes).toBe(1);
    const r = done.result as { children: { key: string }[]; dependencies: Record<string, unknown> | null };
    expect(r.children.map((c) => c.key)).toEqual(['c0', 'c1']);
    expect(r.dependencies).toEqual({ [dep._id]: (await get(f.store, dep._id))!.result });
  });

  it('policy fail: a child that fails for good fails the parent with JOBD_CHILD_FAILED', async () => {
    d = await startTestDaemon(f, { jobTypes, worker: { concurrency: 2 } });
    const { job } = await enqueue(f.store, newJob('parent', { children: 5, failIndex: 2 }, {}, now()), now());
    const done = await finished(job._id);
    expect(done.state).toBe('failed');
    expect(done.lastError).toMatchObject({ code: 'JOBD_CHILD_FAILED' });
    const failedChild = (await jobTree(f.store, job._id)).find((c) => c.spawnKey?.endsWith('/c2'));
    expect(done.lastError!.message).toContain(failedChild!._id);
  });

  it('policy ignore: the parent resumes once every child finished and sees the failure', async () => {
    d = await startTestDaemon(f, { jobTypes, worker: { concurrency: 2 } });
    const { job } = await enqueue(
      f.store,
      newJob('parent', { children: 4, failIndex: 1, policy: 'ignore' }, {}, now()),
      now(),
    );
    const done = await finished(job._id);
    expect(done.state).toBe('completed');
    const states = (done.result as { children: { state: string }[] }).children.map((c) => c.state);
    expect(states).toEqual(['completed', 'failed', 'completed', 'completed']);
  });

  it('policy continue: a failed child resumes the parent at once; the others keep running, and it may wait again', async () => {
    d = await startTestDaemon(f, { jobTypes, worker: { concurrency: 3 } });
    const file = join(mkdtempSync(join(tmpdir(), 'jobd-continue-')), 'open');
    const { job } = await enqueue(f.store, newJob('parentContinue', { file }, {}, now()), now());
    // c0 fails for good while c1 still waits on its gate: the parent resumes, sees that, and waits
    // again for c1 alone (a second suspension).
    const again = await waitUntil(
      async () => {
        const j = await get(f.store, job._id);
        return j?.state === 'waiting' && j.resumes === 2 ? j : undefined;
      },
      { what: 'the parent waiting a second time' },
    );
    const kids = await jobTree(f.store, job._id);
    const c1 = kids.find((k) => k.spawnKey?.endsWith('/c1'))!;
    expect(kids.find((k) => k.spawnKey?.endsWith('/c0'))!.state).toBe('failed');
    expect(c1.state).toBe('running');
    expect(again.dependsOn).toEqual([c1._id]);
    writeFileSync(file, '');
    const done = await finished(job._id);
    expect(done.state).toBe('completed');
    expect(done.result).toEqual({
      children: [
        { key: 'c0', state: 'failed' },
        { key: 'c1', state: 'completed' },
      ],
    });
  });

  it('children may depend on siblings spawned before them: a chain runs in order', async () => {
    d = await startTestDaemon(f, { jobTypes, worker: { concurrency: 3 } });
    const { job } = await enqueue(f.store, newJob('parentChain', {}, {}, now()), now());
    const bad = await enqueue(f.store, newJob('parentChain', { badDep: 'c9' }, {}, now()), now());
    const done = await finished(job._id);
    expect(done.state).toBe('completed');
    const kids = (await jobTree(f.store, job._id)).filter((k) => k.parentId === job._id);
    const byKey = new Map(kids.map((k) => [k.spawnKey!.split('/')[2]!, k]));
    expect(byKey.get('c1')!.dependsOn).toEqual([byKey.get('c0')!._id]);
    expect(byKey.get('c2')!.dependsOn).toEqual([byKey.get('c1')!._id]);
    expect(byKey.get('c1')!.startedAt!.getTime()).toBeGreaterThanOrEqual(
      byKey.get('c0')!.finishedAt!.getTime(),
    );
    expect(byKey.get('c2')!.startedAt!.getTime()).toBeGreaterThanOrEqual(
      byKey.get('c1')!.finishedAt!.getTime(),
    );
    expect((done.result as { children: { key: string; deps: unknown }[] }).children).toEqual([
      { key: 'c0', state: 'completed', deps: null },
      {
        key: 'c1',
        state: 'completed',
        deps: { [byKey.get('c0')!._id]: expect.objectContaining({ name: 'c0' }) },
      },
      {
        key: 'c2',
        state: 'completed',
        deps: { [byKey.get('c1')!._id]: expect.objectContaining({ name: 'c1' }) },
      },
    ]);
    const refused = await finished(bad.job._id);
    expect(refused.state).toBe('failed');
    expect(refused.lastError?.message).toMatch(
      /ctx\.spawn child "c1" depends on "c9", which is not a child spawned before it in this run/,
    );
    expect(await jobTree(f.store, bad.job._id)).toHaveLength(1);
  });

  it('cancelling a waiting parent cancels its unfinished children', async () => {
    d = await startTestDaemon(f, { jobTypes, worker: { concurrency: 2 } });
    const suspended = d.events.waitFor('job:suspended');
    const { job } = await enqueue(
      f.store,
      newJob('parent', { children: 3, childType: 'gate' }, {}, now()),
      now(),
    );
    await suspended;
    await cancel(f.store, job._id, { now: now() });
    const tree = await jobTree(f.store, job._id);
    expect(tree.map((j) => j.state)).toEqual(['cancelled', 'cancelled', 'cancelled', 'cancelled']);
  });
});
