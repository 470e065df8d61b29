/**
 * Resource-aware claiming on real daemons running real jobs: a daemon claims only jobs whose type's
 * needs (CPUs, memory, GPUs) fit its free capacity, gives each job its own GPU ids in
 * CUDA_VISIBLE_DEVICES and ctx.allocation, and gets them back however the attempt ends. Run times
 * are read from the jobs' records (what each handler reported, and the claim time), never from sleeps.
 */
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { enqueue, get, listWorkers, unservedTypes } from '../../src/store/index.js';
import type { JobDoc, JobId, ResourceAllocation } from '../../src/types.js';
import type { Daemon } from '../../src/worker/daemon.js';
import { why as whyWaits } from '../../src/monitor/why.js';
import { builtinHandlerPath } from '../../src/jobs/registry.js';
import { waitForCount } from '../helpers/waitFor.js';
import { fixtureHandler, recorder, startTestDaemon, testConfig } from './daemon-helpers.js';
import { newJob, openStoreFixture, type StoreFixture } from './store-helpers.js';

const probe = fixtureHandler('resourceProbe.mjs');
const now = () => new Date();
const WAIT = { timeoutMs: 60_000 };

interface Probe {
  start: number;
  end: number;
  cuda: string | null;
  allocation: ResourceAllocation | null;
}

describe('daemon: resource-aware claiming', () => {
  let f: StoreFixture;
  const daemons: Daemon[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'jobd-resources-'));
  let gates = 0;
  /** A file path a gated job waits for; open() creates it. */
  const gate = () => {
    const file = join(dir, `gate-${++gates}`);
    return { file, open: () => writeFileSync(file, '') };
  };

  beforeAll(async () => {
    f = await openStoreFixture('daemon_resources');
  });
  afterEach(async () => {
    await Promise.all(daemons.splice(0).map((d) => d.stop({ graceMs: 0 })));
  });
  afterAll(async () => {
    await f.close();
  });

  /** Each daemon's completions and failures, recorded from its start (none can be missed). */
  const seen = new Map<
    Daemon,
    { completed: ReturnType<typeof recorder>; failed: ReturnType<typeof recorder> }
  >();
  const start = async (o: Parameters<typeof startTestDaemon>[1]) => {
    const d = await startTestDaemon(f, o);
    daemons.push(d);
    seen.set(d, { completed: recorder(d, 'job:completed'), failed: recorder(d, 'job:failed') });
    return d;
  };
  const add = async (type: string, params: unknown, priority = 5, maxAttempts = 3) =>
    (await enqueue(f.store, newJob(type, params, { priority, maxAttempts }, now()), now())).job._id;
  const job = async (id: JobId) => (await get(f.store, id)) as JobDoc;
  const probeOf = async (id: JobId) => (await job(id)).result as Probe;
  const completed = (d: Daemon, ids: JobId[]) => seen.get(d)!.completed.waitAll(ids);

  it('two GPU jobs on a one-GPU daemon run one after the other; a job needing nothing runs meanwhile', async () => {
    const d = await start({
      resources: { cpus: 8, memoryMb: 8000, gpus: [3] },
      jobTypes: {
        gpu_a: { handler: probe, needs: { gpus: 1 } },
        plain_a: { handler: probe },
      },
    });
    const g = gate();
    const first = await add('gpu_a', { file: g.file }, 1);
    const second = await add('gpu_a', { ms: 0 }, 1);
    await waitForCount(f.store.jobs, { _id: first, state: 'running' }, 1, WAIT);
    // Behind the GPU jobs in claim order: it runs although the GPU is taken.
    const plain = await add('plain_a', { ms: 0 }, 9);
    await completed(d, [plain]);
    expect(await job(second)).toMatchObject({ state: 'queued', attempts: 0 });
    const w = (await listWorkers(f.store, { now: now(), leaseMs: 30_000 })).find((x) => x._id === d.workerId);
    expect(w?.resources).toMatchObject({ cpus: 8, memoryMb: 8000, gpus: [3] });
    g.open();
    await completed(d, [first, second]);
    const [a, b] = [await probeOf(first), await probeOf(second)];
    expect(a.cuda).toBe('3');
    expect(b.cuda).toBe('3');
    expect(a.allocation).toEqual({ cpus: 0, memoryMb: 0, gpus: [3] });
    // Non-overlapping: the second handler started after the first ended, and was claimed only then.
    expect(b.start).toBeGreaterThanOrEqual(a.end);
    expect((await job(second)).startedAt!.getTime()).toBeGreaterThanOrEqual(a.end);
    expect((await probeOf(plain)).cuda).toBeNull();
  });

  it('each job sees its own GPUs (isolated children), and a third waits for one to come back', async () => {
    const d = await start({
      resources: { cpus: 8, memoryMb: 8000, gpus: [0, 1] },
      jobTypes: { gpu_b: { handler: probe, needs: { gpus: 1 }, mode: 'isolated' } },
    });
    const g = gate();
    const ids = [await add('gpu_b', { file: g.file }), await add('gpu_b', { file: g.file })];
    const third = await add('gpu_b', { ms: 0 });
    await waitForCount(f.store.jobs, { _id: { $in: ids }, state: 'running' }, 2, WAIT);
    const w = (await listWorkers(f.store, { now: now(), leaseMs: 30_000 })).find((x) => x._id === d.workerId);
    expect(w?.running.length ?? 0).toBeLessThanOrEqual(2);
    expect(await job(third)).toMatchObject({ state: 'queued', attempts: 0 });
    g.open();
    await completed(d, [...ids, third]);
    const seen = await Promise.all(ids.map(probeOf));
    expect(seen.map((p) => p.cuda).sort()).toEqual(['0', '1']);
    for (const p of seen) expect(p.allocation?.gpus).toEqual([Number(p.cuda)]);
    const last = await probeOf(third);
    expect(last.start).toBeGreaterThanOrEqual(Math.min(...seen.map((p) => p.end)));
  });

  it('a daemon without GPUs never claims GPU jobs, and says why they wait', async () => {
    const d = await start({
      resources: { cpus: 8, memoryMb: 8000, gpus: [] },
      jobTypes: {
        gpu_c: { handler: probe, needs: { gpus: 1 } },
        plain_c: { handler: probe },
      },
    });
    const gpuJob = await add('gpu_c', { ms: 0 }, 1);
    // Enqueued after, at a lower priority: its completion proves claim rounds ran past the GPU job.
    const plain = await add('plain_c', { ms: 0 }, 9);
    await completed(d, [plain]);
    expect(await job(gpuJob)).toMatchObject({ state: 'queued', attempts: 0 });
    const w = (await listWorkers(f.store, { now: now(), leaseMs: 30_000 })).find((x) => x._id === d.workerId);
    expect(w?.types).not.toContain('gpu_c');
    expect(w?.unfitTypes).toEqual([{ type: 'gpu_c', why: 'needs 1 GPU (resources.gpus has 0)' }]);
    const unserved = await unservedTypes(f.store, { now: now(), leaseMs: 30_000 });
    expect(unserved.find((u) => u.type === 'gpu_c')).toMatchObject({
      queued: 1,
      unfit: [{ worker: d.workerId, why: 'needs 1 GPU (resources.gpus has 0)' }],
    });
    const config = testConfig(f, { jobTypes: { gpu_c: { handler: probe, needs: { gpus: 1 } } } });
    const why = await whyWaits(f.store, config, gpuJob, now());
    expect(why.reasons.map((r) => r.code)).toContain('no-capacity');

    // A daemon with a GPU takes it.
    const gpuDaemon = await start({
      resources: { cpus: 8, memoryMb: 8000, gpus: [0] },
      jobTypes: { gpu_c: { handler: probe, needs: { gpus: 1 } } },
    });
    await completed(gpuDaemon, [gpuJob]);
    expect((await probeOf(gpuJob)).cuda).toBe('0');
  });

  it('memory: two jobs that do not fit together run one after the other; a small one fits beside', async () => {
    const d = await start({
      resources: { cpus: 8, memoryMb: 1000, gpus: [] },
      jobTypes: {
        big_d: { handler: probe, needs: { memoryMb: 600 } },
        small_d: { handler: probe, needs: { memoryMb: 300, cpus: 1 } },
      },
    });
    const g = gate();
    const big1 = await add('big_d', { file: g.file }, 1);
    const big2 = await add('big_d', { ms: 0 }, 1);
    const small = await add('small_d', { file: g.file }, 9);
    await waitForCount(f.store.jobs, { _id: { $in: [big1, small] }, state: 'running' }, 2, WAIT);
    expect(await job(big2)).toMatchObject({ state: 'queued', attempts: 0 });
    g.open();
    await completed(d, [big1, big2, small]);
    const [a, b, s] = [await probeOf(big1), await probeOf(big2), await probeOf(small)];
    expect(b.start).toBeGreaterThanOrEqual(a.end);
    expect(s.allocation).toEqual({ cpus: 1, memoryMb: 300, gpus: [] });
    // Claimed while the first big job held its memory.
    expect((await job(small)).startedAt!.getTime()).toBeLessThan(a.end);
  });

  it('the GPU comes back however the attempt ends: a crashed child, a timeout', async () => {
    const d = await start({
      resources: { cpus: 8, memoryMb: 8000, gpus: [5] },
      jobTypes: {
        gpu_e: { handler: probe, needs: { gpus: 1 }, mode: 'isolated', maxAttempts: 1, timeoutMs: 1_500 },
      },
    });
    const crash = await add('gpu_e', { crash: true }, 1, 1);
    const hang = await add('gpu_e', { hang: true }, 2, 1);
    const after = await add('gpu_e', { ms: 0 }, 3);
    await seen.get(d)!.failed.waitAll([crash, hang]);
    await completed(d, [after]);
    expect((await job(crash)).lastError).toMatchObject({ message: expect.stringContaining('exit code 7') });
    expect((await job(hang)).lastError).toMatchObject({ code: 'JOBD_TIMEOUT' });
    expect((await probeOf(after)).cuda).toBe('5');
    const w = (await listWorkers(f.store, { now: now(), leaseMs: 30_000 })).find((x) => x._id === d.workerId);
    await d.stop({ graceMs: 0 });
    daemons.splice(daemons.indexOf(d), 1);
    const stopped = (await listWorkers(f.store, { now: now(), leaseMs: 30_000 })).find(
      (x) => x._id === w!._id,
    );
    expect(stopped?.resources?.used).toEqual({ cpus: 0, memoryMb: 0, gpus: [] });
  });

  it("external_program hands its GPU to the program in the program's gpuEnv", async () => {
    const program = join(dir, 'gpus.sh');
    writeFileSync(program, '#!/bin/sh\nprintf "%s" "$MY_GPUS" > "$1"\n');
    chmodSync(program, 0o755);
    const d = await start({
      resources: { cpus: 8, memoryMb: 8000, gpus: [2] },
      dataDirs: { out: dir },
      programs: {
        gpus: {
          path: program,
          args: ['{out}/gpus.txt'],
          outputs: ['{out}/gpus.txt'],
          gpuEnv: 'MY_GPUS',
          permanentExitCodes: [],
        },
      },
      jobTypes: { external_program: { handler: builtinHandlerPath('external_program'), needs: { gpus: 1 } } },
    });
    const id = await add('external_program', { program: 'gpus', outputs: { out: dir } });
    await completed(d, [id]);
    expect(readFileSync(join(dir, 'gpus.txt'), 'utf8')).toBe('2');
    expect((await job(id)).result).toMatchObject({ gpus: '2' });
  });
});
