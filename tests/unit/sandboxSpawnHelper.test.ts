/**
 * SandboxOptions.spawnHelper: isolated children started by a small helper process of the sandbox's
 * (sandbox/spawnHelper.ts). Real processes and real signals: the helper stopped (SIGSTOP), killed
 * (SIGKILL) with requests unanswered and with children running, and the sandbox's own process killed.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { sandboxChildren, spawnHelpers } from '../helpers/sandboxChildren.js';
import {
  completed,
  expectGone,
  failed,
  noHooks,
  request,
  runReportingPid,
  sandbox,
  sandboxParent,
  useSandboxes,
} from './sandboxHelpers.js';

const { dir: tempDir } = useSandboxes();

/** Field `i` (0-based, after "pid (comm) ") of /proc/<pid>/stat: 0 state, 1 ppid, 2 process group. */
function statField(pid: number, i: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[i]!;
}

/** The one spawn helper of this process (each test closes its sandbox, and with it its helper). */
async function theHelper(): Promise<number> {
  return vi.waitFor(
    () => {
      const h = spawnHelpers(process.pid);
      if (h.length !== 1) throw new Error(`spawn helpers of this process: ${JSON.stringify(h)}`);
      return h[0]!;
    },
    { timeout: 10_000, interval: 20 },
  );
}

const until = (name: string): string => join(tempDir(), name);

describe('isolated children started by the spawn helper', () => {
  it('run in a child of the helper, in their own process group, with their output in the log file', async () => {
    const s = sandbox({ spawnHelper: true });
    const req = request('parents.ts', { mode: 'isolated' });
    const o = completed(await s.run(req, noHooks));
    const helper = await theHelper();
    const out = o.output as { pid: number; ppid: number; daemonEnv: string | null };
    expect(out.ppid).toBe(helper);
    expect(out.daemonEnv).toBeNull(); // childEntry takes it out of the handler's environment
    expect(Number(statField(helper, 1))).toBe(process.pid);
    // The helper leads a group of its own: a Ctrl-C meant for its parent's group does not reach it.
    expect(Number(statField(helper, 2))).toBe(helper);
    expect(readFileSync(req.logFile, 'utf8')).toContain(`ran in ${out.pid}, parent ${helper}`);
    expectGone(out.pid);
    // Closing the sandbox stops its helper.
    await s.close();
    await vi.waitFor(() => expectGone(helper), { timeout: 10_000, interval: 20 });
  });

  it('a helper killed while a job runs: the job still reports, its exit is seen, and the next job gets a new helper', async () => {
    const s = sandbox({ spawnHelper: true });
    const req = request('parents.ts', { mode: 'isolated', params: { until: until('go-1') } });
    const run = runReportingPid(s, req);
    const pid = await run.pid;
    const helper = await theHelper();
    process.kill(helper, 'SIGKILL');
    await vi.waitFor(() => expectGone(helper), { timeout: 10_000, interval: 20 });
    // Re-parented, the child goes on: the sandbox's process, which it works for, is alive (its watch
    // runs every second; give it two).
    await new Promise((r) => setTimeout(r, 2_500));
    expect(statField(pid, 0)).not.toBe('Z');
    writeFileSync(until('go-1'), '');
    const o = completed(await run.outcome);
    // It finished re-parented (its parent was the helper when it started: theHelper() above).
    expect(o.output).toMatchObject({ pid });
    expect((o.output as { ppid: number }).ppid).not.toBe(helper);
    // Seen ended as a zombie; its new parent reaps it.
    await vi.waitFor(() => expectGone(pid), { timeout: 5_000, interval: 20 });
    const next = completed(await s.run(request('parents.ts', { mode: 'isolated' }), noHooks));
    const second = await theHelper();
    expect(second).not.toBe(helper);
    expect(next.output).toMatchObject({ ppid: second });
  });

  it('a child of a killed helper that then dies is reported as ended unseen', async () => {
    const s = sandbox({ spawnHelper: true });
    const run = runReportingPid(
      s,
      request('parents.ts', { mode: 'isolated', params: { until: until('never') } }),
    );
    const pid = await run.pid;
    process.kill(await theHelper(), 'SIGKILL');
    await new Promise((r) => setTimeout(r, 200));
    process.kill(pid, 'SIGKILL');
    const o = failed(await run.outcome);
    expect(o.reason).toBe('crash');
    expect(o.error.message).toContain('ended unseen (the spawn helper that started it exited first)');
  });

  it('a start the helper never answered (stopped, then killed) is made by the sandbox itself', async () => {
    const s = sandbox({ spawnHelper: true });
    completed(await s.run(request('parents.ts', { mode: 'isolated' }), noHooks));
    const helper = await theHelper();
    process.kill(helper, 'SIGSTOP');
    const outcome = s.run(request('parents.ts', { mode: 'isolated' }), noHooks);
    // The request waits in the stopped helper's channel.
    await new Promise((r) => setTimeout(r, 300));
    expect(sandboxChildren(process.pid)).toEqual([]);
    process.kill(helper, 'SIGKILL');
    const o = completed(await outcome);
    expect(o.output).toMatchObject({ ppid: process.pid });
  });

  it('a cancel before the helper answers kills the child as it starts', async () => {
    const s = sandbox({ spawnHelper: true });
    completed(await s.run(request('parents.ts', { mode: 'isolated' }), noHooks));
    const helper = await theHelper();
    process.kill(helper, 'SIGSTOP');
    const abort = new AbortController();
    const req = request('parents.ts', { mode: 'isolated', params: { until: until('never-2') } });
    let progressed = false;
    const outcome = s.run(req, { onProgress: () => (progressed = true), signal: abort.signal });
    await new Promise((r) => setTimeout(r, 200));
    abort.abort('operator cancel');
    // Longer than the kill grace (300 ms): SIGTERM and then SIGKILL are both asked for before it starts.
    await new Promise((r) => setTimeout(r, 700));
    process.kill(helper, 'SIGCONT');
    const o = failed(await outcome);
    expect(o.reason).toBe('aborted');
    expect(progressed).toBe(false);
    // The child was started, and killed as it was: nothing is left of it.
    expect(sandboxChildren(process.pid)).toEqual([]);
  });

  it("the helper exits when the sandbox's process is SIGKILLed; the job's child follows by itself", async () => {
    const { parent, pid, exited } = await sandboxParent(tempDir(), 'helper');
    const helper = Number(statField(pid, 1));
    expect(spawnHelpers(parent.pid!)).toEqual([helper]);
    parent.kill('SIGKILL');
    await exited;
    await vi.waitFor(() => expectGone(helper), { timeout: 10_000, interval: 50 });
    // Its handler ignores SIGTERM and never settles: only the child's own watch ends it.
    await vi.waitFor(() => expectGone(pid), { timeout: 15_000, interval: 100 });
  });

  it("the helper exits when its daemon dies while a child's socket is on its way to it", async () => {
    // Node holds back the helper's 'disconnect' until the daemon acknowledges the socket it was sent,
    // which a dead daemon never does.
    const marker = `jobd-orphan-check-${process.pid}-${Date.now()}`;
    const run = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        join(import.meta.dirname, '../fixtures/helperDaemonDies.ts'),
        marker,
        until('orphan.log'),
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(run.signal).toBe('SIGKILL');
    const helper = Number(/helper:(\d+)/.exec(run.stdout)?.[1]);
    expect(helper).toBeGreaterThan(0);
    // The child it started for the dead daemon (its command line carries the marker).
    const child = await vi.waitFor(
      () => {
        const found = pidsWith(marker);
        if (found.length !== 1) throw new Error(`children with the marker: ${found.join(', ')}`);
        return found[0]!;
      },
      { timeout: 15_000, interval: 50 },
    );
    try {
      await vi.waitFor(() => expectGone(helper), { timeout: 5_000, interval: 50 });
    } finally {
      try {
        process.kill(-child, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
});

/** Processes whose command line contains `marker`. */
function pidsWith(marker: string): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(marker);
      } catch {
        return false;
      }
    })
    .map(Number);
}
