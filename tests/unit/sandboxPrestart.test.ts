/**
 * Isolated children started ahead of their jobs (src/sandbox/prestart.ts): the job runs in the process
 * that was started for it before run() was called; a child that no longer fits its run is replaced; at
 * most `prestart` are alive; a discarded one, one the sandbox's close() finds, and one whose parent is
 * SIGKILLed are gone, having written nothing. Real child processes, found through /proc.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import type { RunRequest } from '../../src/sandbox/index.js';
import { sandboxChildren } from '../helpers/sandboxChildren.js';
import { completed, expectGone, noHooks, request, sandbox, useSandboxes } from './sandboxHelpers.js';

const { dir } = useSandboxes();

/** Live sandbox children whose parent is `ppid`, by pid. */
function childrenOf(ppid: number): number[] {
  return sandboxChildren(ppid)
    .map((c) => c.pid)
    .sort((a, b) => a - b);
}

/** Waits until exactly `n` children started here are alive; returns their pids. */
async function waitForChildren(n: number, ppid = process.pid): Promise<number[]> {
  return vi.waitFor(
    () => {
      const pids = childrenOf(ppid);
      if (pids.length !== n) throw new Error(`${pids.length} children, waiting for ${n}: ${pids.join(' ')}`);
      return pids;
    },
    { timeout: 20_000, interval: 20 },
  );
}

function spec(req: RunRequest): {
  jobId: string;
  handler: string;
  logFile: string;
  env?: Record<string, string>;
} {
  return {
    jobId: req.jobId,
    handler: req.handler,
    logFile: req.logFile,
    ...(req.env ? { env: req.env } : {}),
  };
}

const isolated = (over: Partial<RunRequest> = {}): RunRequest =>
  request('ok.ts', { mode: 'isolated', env: { JOBD_FIXTURE_ENV: 'ahead' }, ...over });

describe('isolated children started ahead of their jobs', () => {
  it('the job runs in the child started for it before run() was called', async () => {
    const s = sandbox({ prestart: 1, maxChildren: 1 });
    const req = isolated();
    s.prestart!(spec(req));
    const [pid] = await waitForChildren(1);
    expect(s.stats()).toMatchObject({ children: 1, busy: 0 });
    const o = completed(await s.run(req, noHooks));
    expect(o.output).toMatchObject({ pid, env: 'ahead' });
    // Its output still goes to the job's log file, and the tail holds it.
    expect(o.logTail).toContain(`hello from ${req.jobId}`);
    expect(readFileSync(req.logFile, 'utf8')).toContain(`stderr line from ${req.jobId}`);
    await vi.waitFor(() => expectGone(pid!), { timeout: 10_000, interval: 20 });
    expect(s.stats().children).toBe(0);
  });

  it('without a child started ahead (prestart 0, or another job id) the run starts its own', async () => {
    const none = sandbox({ prestart: 0 });
    const req = isolated();
    none.prestart!(spec(req));
    expect(childrenOf(process.pid)).toEqual([]);
    completed(await none.run(req, noHooks));

    const s = sandbox({ prestart: 1 });
    const other = isolated();
    s.prestart!(spec(other));
    const [pid] = await waitForChildren(1);
    const o = completed(await s.run(isolated(), noHooks));
    expect((o.output as { pid: number }).pid).not.toBe(pid);
    // The other job's child still waits for its job.
    expect(childrenOf(process.pid)).toEqual([pid]);
  });

  it('a child that no longer fits its run (another environment) is killed and the run starts its own', async () => {
    const s = sandbox({ prestart: 1 });
    const req = isolated();
    s.prestart!(spec(req));
    const [pid] = await waitForChildren(1);
    const o = completed(await s.run({ ...req, env: { JOBD_FIXTURE_ENV: 'changed' } }, noHooks));
    expect(o.output).toMatchObject({ env: 'changed' });
    expect((o.output as { pid: number }).pid).not.toBe(pid);
    await vi.waitFor(() => expectGone(pid!), { timeout: 10_000, interval: 20 });
  });

  it('at most `prestart` are alive; the next starts, in claim order, when one is handed over or discarded', async () => {
    const s = sandbox({ prestart: 2, maxChildren: 1 });
    const reqs = [isolated(), isolated(), isolated(), isolated()];
    for (const r of reqs) s.prestart!(spec(r));
    const first = await waitForChildren(2);
    // Still two a moment later: the others wait.
    await new Promise((r) => setTimeout(r, 300));
    expect(childrenOf(process.pid)).toEqual(first);

    // Discarding the first job's child starts the third job's.
    s.discard!(reqs[0]!.jobId);
    const second = await vi.waitFor(
      () => {
        const pids = childrenOf(process.pid);
        if (pids.length !== 2 || pids.includes(first[0]!)) throw new Error(`children ${pids.join(' ')}`);
        return pids;
      },
      { timeout: 20_000, interval: 20 },
    );
    // Running the second job hands its child over; the fourth job's starts.
    const o2 = completed(await s.run(reqs[1]!, noHooks));
    expect(second).toContain((o2.output as { pid: number }).pid);
    const o3 = completed(await s.run(reqs[2]!, noHooks));
    expect(second).toContain((o3.output as { pid: number }).pid);
    const o4 = completed(await s.run(reqs[3]!, noHooks));
    expect([...first, ...second]).not.toContain((o4.output as { pid: number }).pid);
    const pids = [o2, o3, o4].map((o) => (o.output as { pid: number }).pid);
    expect(new Set(pids).size).toBe(3);
  });

  it('a discarded child is killed at once and writes nothing to the log file', async () => {
    const s = sandbox({ prestart: 1, killGraceMs: 60_000 });
    const req = isolated();
    s.prestart!(spec(req));
    const [pid] = await waitForChildren(1);
    const t0 = performance.now();
    s.discard!(req.jobId);
    // SIGKILL, not the kill grace of a minute.
    await vi.waitFor(() => expectGone(pid!), { timeout: 10_000, interval: 20 });
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(s.stats().children).toBe(0);
    expect(existsSync(req.logFile) ? statSync(req.logFile).size : 0).toBe(0);
  });

  it('close() kills the children started ahead', async () => {
    const s = sandbox({ prestart: 2, killGraceMs: 60_000 });
    s.prestart!(spec(isolated()));
    s.prestart!(spec(isolated()));
    const pids = await waitForChildren(2);
    await s.close();
    for (const pid of pids) expectGone(pid);
    // A closed sandbox starts no more.
    s.prestart!(spec(isolated()));
    await new Promise((r) => setTimeout(r, 300));
    expect(childrenOf(process.pid)).toEqual([]);
  });

  it('a child started ahead whose parent is SIGKILLed exits by itself and writes nothing', async () => {
    const logDir = mkdtempSync(join(dir(), 'parent-'));
    const logFile = join(logDir, 'ahead.log');
    const parent = spawn(
      process.execPath,
      ['--import', 'tsx', resolve(import.meta.dirname, '../fixtures/sandboxParent.ts'), logDir, 'ahead'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise((r) => parent.once('exit', r));
    try {
      const [pid] = await waitForChildren(1, parent.pid!);
      parent.kill('SIGKILL');
      await exited;
      await vi.waitFor(() => expectGone(pid!), { timeout: 15_000, interval: 50 });
      expect(existsSync(logFile) ? readFileSync(logFile, 'utf8') : '').toBe('');
    } finally {
      parent.kill('SIGKILL');
    }
  });
});
