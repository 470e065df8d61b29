/**
 * worker.prestartIsolated: the child of an isolated job claimed ahead of a free slot is started while
 * the running job finishes, and the job runs in it; a cancel or a shutdown while the job waits kills
 * that child at once (it ran nothing of the job), and the job is cancelled, or requeued with its attempt
 * given back. Real daemon, real children (found through /proc), the embedded server over the wire.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { JobdClient } from '../../src/client.js';
import { get } from '../../src/store/index.js';
import type { ResolvedConfig } from '../../src/config/types.js';
import type * as DaemonModule from '../../src/worker/daemon.js';
import type { Daemon } from '../../src/worker/daemon.js';
import { sandboxChildren } from '../helpers/sandboxChildren.js';
import { collect, fixtureHandler, testConfig } from './daemon-helpers.js';
import { openStoreFixture, type StoreFixture } from './store-helpers.js';

interface Report {
  pid: number;
  siblings: number[];
  ranAt: number;
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('isolated children started ahead of their jobs', () => {
  let f: StoreFixture;
  let client: JobdClient;
  let d: Daemon | undefined;
  beforeEach(async () => {
    f = await openStoreFixture('prestart');
    client = await JobdClient.connect({ mongoUri: f.t.uri, database: f.t.dbName });
  });
  afterEach(async () => {
    await d?.stop({ graceMs: 0 });
    d = undefined;
    await client.close();
    await f.close();
  });

  const start = async (worker: Partial<ResolvedConfig['worker']> = {}): Promise<Daemon> => {
    // The compiled daemon, as production runs it: its children start with plain node (from the
    // sources they would load tsx, whose start-up on a busy machine can pass the second under which
    // jobs are claimed ahead at all).
    const { startDaemon } = (await import(
      pathToFileURL(resolve(import.meta.dirname, '../../dist/worker/daemon.js')).href
    )) as typeof DaemonModule;
    return startDaemon({
      config: testConfig(f, {
        worker: { concurrency: 1, ...worker },
        jobTypes: { sib: { handler: fixtureHandler('siblings.mjs'), mode: 'isolated', timeoutMs: 120_000 } },
      }),
      logger: pino({ level: process.env.JOBD_TEST_LOG ?? 'silent' }),
    });
  };

  /**
   * After a short job, a long one (A) is running and a short one (B) is claimed ahead; A's handler
   * writes its pid to `pidFile`.
   */
  async function longThenShort(msA: number, pidFile?: string): Promise<{ a: string; b: string }> {
    // One short job first: from its run time the daemon claims one ahead.
    const warm = (await client.enqueue('sib', { ms: 0 })).job._id;
    await collect(d!, 'job:completed', [warm]);
    const a = (await client.enqueue('sib', { ms: msA, ...(pidFile ? { pidFile } : {}) })).job._id;
    const b = (await client.enqueue('sib', { ms: 0 })).job._id;
    await vi.waitFor(async () => expect((await get(f.store, b))?.state).toBe('running'), {
      timeout: 20_000,
      interval: 20,
    });
    return { a, b };
  }

  /**
   * The same, and the two children: A's (from its pid file: A and B may be claimed together, and then
   * B's child, started as B is claimed, can be older than A's) and the one started ahead for B.
   */
  async function aheadOfALongJob(msA: number): Promise<{ a: string; b: string; aPid: number; bPid: number }> {
    const pidFile = join(mkdtempSync(join(tmpdir(), 'jobd-prestart-')), 'a.pid');
    const { a, b } = await longThenShort(msA, pidFile);
    return vi.waitFor(
      () => {
        const aPid = Number((existsSync(pidFile) ? readFileSync(pidFile, 'utf8') : '').trim());
        if (!aPid) throw new Error("A's handler has not started yet");
        const others = sandboxChildren(process.pid).filter((c) => c.pid !== aPid);
        if (others.length !== 1) throw new Error(`${others.length} children besides A's`);
        return { a, b, aPid, bPid: others[0]!.pid };
      },
      { timeout: 20_000, interval: 20 },
    );
  }

  const report = async (id: string): Promise<Report> => (await get(f.store, id))!.result as Report;

  it('a job claimed ahead runs in the child started for it while the job before it ran', async () => {
    d = await start();
    const { a, b, bPid } = await aheadOfALongJob(1_500);
    await collect(d, 'job:completed', [a, b]);
    expect((await report(a)).siblings).toContain(bPid);
    expect((await report(b)).pid).toBe(bPid);
  });

  it('with worker.prestartIsolated false, a job claimed ahead gets its child when it starts', async () => {
    d = await start({ prestartIsolated: false });
    const { a, b } = await longThenShort(1_500);
    await collect(d, 'job:completed', [a, b]);
    // B was claimed (running in the database) while A ran, and had no child then.
    expect((await report(a)).siblings).toEqual([]);
  });

  it('a cancel while the job waits claimed ahead kills its child at once; the running job goes on', async () => {
    d = await start();
    const { a, b, aPid, bPid } = await aheadOfALongJob(120_000);
    await client.cancel(b);
    await vi.waitFor(() => expect(alive(bPid)).toBe(false), { timeout: 15_000, interval: 20 });
    expect(alive(aPid)).toBe(true);
    expect((await get(f.store, b))?.state).toBe('cancelled');
    expect((await get(f.store, a))?.state).toBe('running');
  });

  it('a shutdown requeues the job claimed ahead with its attempt given back, and kills its child first', async () => {
    d = await start();
    const { a, b, aPid, bPid } = await aheadOfALongJob(120_000);
    const stopping = d.stop({ graceMs: 60_000 });
    d = undefined;
    await vi.waitFor(() => expect(alive(bPid)).toBe(false), { timeout: 15_000, interval: 20 });
    // The running job is still within its grace.
    expect(alive(aPid)).toBe(true);
    // The child is killed as the job is taken back; the requeue is written after.
    await vi.waitFor(
      async () => expect(await get(f.store, b)).toMatchObject({ state: 'queued', attempts: 0 }),
      {
        timeout: 15_000,
        interval: 20,
      },
    );
    await client.cancel(a);
    await stopping;
    expect(sandboxChildren(process.pid)).toEqual([]);
  });
});
