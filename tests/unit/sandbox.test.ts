/**
 * The sandbox with real child processes and real signals. Tests wait on outcomes, progress
 * callbacks and logger calls; none of them sleeps or asserts on wall-clock durations.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { isDoNotRetry } from '../../src/errors.js';
import { LazyAbort } from '../../src/sandbox/lazyAbort.cjs';
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

describe('pooled mode', () => {
  it('runs a handler, returns its output, writes its output to the log file and the tail', async () => {
    const s = sandbox();
    const req = request('ok.ts', { params: { n: 1, when: new Date(0) } });
    const o = completed(await s.run(req, noHooks));
    expect(o.output).toMatchObject({ echo: { n: 1, when: new Date(0) } });
    expect(o.logTail).toContain(`hello from ${req.jobId} attempt 1`);
    expect(o.logTail).toContain(`stderr line from ${req.jobId}`);
    const file = readFileSync(req.logFile, 'utf8');
    expect(file).toContain(`hello from ${req.jobId}`);
    expect(file).not.toContain('jobd-end-of-job');
    expect(o.resources.wallMs).toBeGreaterThanOrEqual(0);
    expect(o.resources.cpuMs).toBeGreaterThanOrEqual(0);
    expect(o.resources.peakRssBytes).toBeGreaterThan(0);
    expect(s.stats()).toEqual({ children: 1, idle: 1, busy: 0 });
  });

  it('reuses the same child across jobs and attributes output to each job', async () => {
    const s = sandbox();
    const a = request('ok.ts');
    const b = request('ok.ts');
    const oa = completed(await s.run(a, noHooks));
    const ob = completed(await s.run(b, noHooks));
    expect((ob.output as { pid: number }).pid).toBe((oa.output as { pid: number }).pid);
    expect(ob.logTail).toContain(b.jobId);
    expect(ob.logTail).not.toContain(a.jobId);
    expect(readFileSync(b.logFile, 'utf8')).not.toContain(a.jobId);
  });

  it('loads a JavaScript module through its named `handler` export', async () => {
    const o = completed(await sandbox().run(request('named.js', { params: { x: 1 } }), noHooks));
    expect(o.output).toMatchObject({ named: true, params: { x: 1 } });
  });

  it('loads CommonJS handlers and ES modules with top-level await, in both modes', async () => {
    const s = sandbox();
    for (const mode of ['pooled', 'isolated'] as const) {
      expect(
        completed(await s.run(request('commonjs.cjs', { mode, params: { y: 2 } }), noHooks)).output,
      ).toEqual({
        commonjs: true,
        params: { y: 2 },
      });
      expect(completed(await s.run(request('topLevelAwait.js', { mode }), noHooks)).output).toBe('tla');
    }
  });

  it('recycles a child after maxJobsPerChild jobs', async () => {
    const s = sandbox({ maxJobsPerChild: 2 });
    const pids: number[] = [];
    for (let i = 0; i < 3; i++)
      pids.push((completed(await s.run(request('ok.ts'), noHooks)).output as { pid: number }).pid);
    expect(pids[1]).toBe(pids[0]);
    expect(pids[2]).not.toBe(pids[0]);
  });

  it('recycles a child whose RSS is above maxRssBytes after a job', async () => {
    const s = sandbox({ maxRssBytes: 1024 });
    const p1 = (completed(await s.run(request('ok.ts'), noHooks)).output as { pid: number }).pid;
    const p2 = (completed(await s.run(request('ok.ts'), noHooks)).output as { pid: number }).pid;
    expect(p2).not.toBe(p1);
  });

  it('keeps a child whose handler merely threw, and recycles one that left an unhandled rejection', async () => {
    const s = sandbox();
    const p1 = (completed(await s.run(request('ok.ts'), noHooks)).output as { pid: number }).pid;
    failed(await s.run(request('throwsString.ts'), noHooks));
    const p2 = (completed(await s.run(request('ok.ts'), noHooks)).output as { pid: number }).pid;
    expect(p2).toBe(p1);

    const rejReq = request('unhandledRejection.ts');
    const rej = completed(await s.run(rejReq, noHooks));
    expect(rej.output).toBe(p1);
    expect(rej.logTail).toContain('nobody catches me');
    const p3 = (completed(await s.run(request('ok.ts'), noHooks)).output as { pid: number }).pid;
    expect(p3).not.toBe(p1);
  });

  it('recycles a child that prints after its job finished', async () => {
    let misbehaved!: (d: Record<string, unknown>) => void;
    const warned = new Promise<Record<string, unknown>>((r) => (misbehaved = r));
    const s = sandbox({
      logger: {
        info() {},
        error() {},
        warn(obj, msg) {
          if (msg?.includes('misbehaved')) misbehaved(obj);
        },
      },
    });
    const pid = completed(await s.run(request('strayOutput.ts'), noHooks)).output as number;
    expect(await warned).toMatchObject({ pid, why: 'output outside a job' });
    const next = (completed(await s.run(request('ok.ts'), noHooks)).output as { pid: number }).pid;
    expect(next).not.toBe(pid);
  });

  it('times out: SIGTERM, then SIGKILL for a child that ignores SIGTERM; the pid is gone when run() resolves', async () => {
    const s = sandbox();
    const warm = (completed(await s.run(request('ok.ts'), noHooks)).output as { pid: number }).pid;
    const req = request('hangs.ts', { timeoutMs: 500, killGraceMs: 300 });
    const { pid, outcome } = runReportingPid(s, req);
    const o = failed(await outcome);
    expect(await pid).toBe(warm);
    expect(o.reason).toBe('timeout');
    expect(o.error).toMatchObject({ name: 'JobTimeoutError', code: 'JOBD_TIMEOUT' });
    expect(o.error.message).toContain('500 ms');
    expect(o.signal).toBe('SIGKILL');
    // The handler saw SIGTERM first.
    expect(o.logTail).toContain('hangs: ignoring SIGTERM');
    expectGone(warm);
    expect(s.stats().children).toBe(0);
    // A killed child is never reused.
    const next = (completed(await s.run(request('ok.ts'), noHooks)).output as { pid: number }).pid;
    expect(next).not.toBe(warm);
  });

  it('times out a polite handler: ctx.signal aborts on SIGTERM and the child exits without SIGKILL', async () => {
    const s = sandbox();
    // The timeout counts from run(), start-up included: a child still starting when it fires dies of
    // the SIGTERM before any handler can be polite. So the child is started, and the module loaded,
    // first; the timed job then reaches its handler within moments, however loaded the machine.
    const warm = completed(
      await s.run(request('sleepsUntilAborted.ts', { params: { instant: true } }), noHooks),
    );
    expect(warm.output).toBe('warm');
    const { pid, outcome } = runReportingPid(
      s,
      request('sleepsUntilAborted.ts', { timeoutMs: 3000, killGraceMs: 30_000 }),
    );
    const o = failed(await outcome);
    expect(o.reason).toBe('timeout');
    expect(o.signal).toBeNull();
    expect(o.exitCode).toBe(143);
    expect(o.logTail).toContain('aborted: job stopped by jobd (SIGTERM)');
    expectGone(await pid);
  });

  it('does not start a job whose signal is already aborted', async () => {
    const s = sandbox();
    const o = failed(
      await s.run(request('ok.ts'), { onProgress() {}, signal: AbortSignal.abort('shutdown') }),
    );
    expect(o.reason).toBe('aborted');
    expect(s.stats().children).toBe(0);
  });

  // The daemon passes its LazyAbort (hooks.abort): the sandbox listens without an AbortSignal.
  const noSignal = (): LazyAbort => {
    const abort = new LazyAbort();
    Object.defineProperty(abort, 'signal', {
      get: () => {
        throw new Error('the sandbox asked for an AbortSignal');
      },
    });
    return abort;
  };

  it.each([
    ['hooks.signal', 'pooled'],
    ['hooks.abort, without an AbortSignal', 'pooled'],
    ['hooks.abort, without an AbortSignal', 'isolated'],
  ] as const)('aborts a running job through %s (%s) and reports reason "aborted"', async (via, mode) => {
    const s = sandbox();
    const ac = new AbortController();
    const lazy = noSignal();
    const source = via === 'hooks.signal' ? ac.signal : lazy;
    const { pid, outcome } = runReportingPid(s, request('hangs.ts', { mode }), source);
    const p = await pid;
    const reason = new Error('lease lost');
    if (via === 'hooks.signal') ac.abort(reason);
    else lazy.abort(reason);
    const o = failed(await outcome);
    expect(o.reason).toBe('aborted');
    expect(o.error).toMatchObject({ name: 'JobAbortedError', code: 'JOBD_ABORTED' });
    expect(o.error.message).toContain('lease lost');
    expectGone(p);
  });

  it('through hooks.abort: a run waiting for a child ends at the abort; an abort already made starts nothing', async () => {
    const s = sandbox({ maxChildren: 1 });
    const holder = noSignal();
    const first = runReportingPid(s, request('sleepsUntilAborted.ts'), holder);
    await first.pid;
    const waiting = noSignal();
    const second = s.run(request('ok.ts'), { onProgress() {}, abort: waiting });
    waiting.abort(new Error('cancelled while waiting'));
    const o = failed(await second);
    expect(o).toMatchObject({ reason: 'aborted', error: { code: 'JOBD_ABORTED' } });
    expect(o.error.message).toContain('cancelled while waiting');
    expect(s.stats()).toEqual({ children: 1, idle: 0, busy: 1 });

    const before = noSignal();
    before.abort('shutdown');
    const never = failed(await s.run(request('ok.ts'), { onProgress() {}, abort: before }));
    expect(never.reason).toBe('aborted');
    expect(never.error.message).toContain('before it started');

    holder.abort(new Error('done'));
    expect(failed(await first.outcome).reason).toBe('aborted');
  });

  it('reports process.exit inside a handler as a crash naming the exit code', async () => {
    const s = sandbox();
    const o = failed(await s.run(request('exits.ts', { params: { code: 7 } }), noHooks));
    expect(o).toMatchObject({ reason: 'crash', exitCode: 7, signal: null });
    expect(o.error).toMatchObject({ name: 'ChildCrashError', code: 'JOBD_CHILD_CRASH' });
    expect(o.error.message).toContain('code 7');
    expect(o.logTail).toContain('about to exit');
    expect(s.stats().children).toBe(0);
  });

  it('reports death by signal as a crash naming the signal', async () => {
    const o = failed(await sandbox().run(request('sigkill.ts'), noHooks));
    expect(o).toMatchObject({ reason: 'crash', signal: 'SIGKILL' });
    expect(o.error.message).toContain('SIGKILL');
  });

  it('kills a child above the job memory limit, naming the limit and the observed RSS', async () => {
    const s = sandbox();
    const limit = 200 * 1024 * 1024;
    const { pid, outcome } = runReportingPid(
      s,
      request('memoryHog.ts', { memoryLimitBytes: limit, params: { capMb: 1024 } }),
    );
    const o = failed(await outcome);
    expect(o.reason).toBe('memory');
    expect(o.error).toMatchObject({ name: 'MemoryLimitError', code: 'JOBD_MEMORY_LIMIT' });
    expect(o.error.message).toContain(String(limit));
    expect(o.resources.peakRssBytes).toBeGreaterThan(limit);
    expect(o.error.message).toContain(String(o.resources.peakRssBytes));
    expectGone(await pid);
  });

  it('serialises non-Error throws', async () => {
    const s = sandbox();
    const str = failed(await s.run(request('throwsString.ts'), noHooks));
    expect(str).toMatchObject({ reason: 'error', error: { name: 'NonError' } });
    expect(str.error.message).toContain('plain string failure');

    const undef = failed(await s.run(request('throwsValue.ts', { params: { kind: 'undefined' } }), noHooks));
    expect(undef.error.name).toBe('NonError');

    const num = failed(await s.run(request('throwsValue.ts', { params: { value: 42 } }), noHooks));
    expect(num.error.message).toContain('42');

    const obj = failed(
      await s.run(
        request('throwsValue.ts', {
          params: { value: { name: 'QuotaError', code: 'Q1', message: 'quota exceeded' } },
        }),
        noHooks,
      ),
    );
    expect(obj.error).toMatchObject({ name: 'QuotaError', code: 'Q1', message: 'quota exceeded' });
  });

  it('preserves DoNotRetryError name and code across the process boundary', async () => {
    const o = failed(await sandbox().run(request('doNotRetry.ts'), noHooks));
    expect(o.error).toMatchObject({ name: 'DoNotRetryError', code: 'JOBD_DO_NOT_RETRY' });
    expect(isDoNotRetry(o.error)).toBe(true);
  });

  it('fails clearly on output that cannot be serialised, and keeps the child', async () => {
    const s = sandbox();
    const o = failed(await s.run(request('unserializable.ts'), noHooks));
    expect(o.reason).toBe('error');
    expect(o.error).toMatchObject({ name: 'UnserializableOutputError', code: 'JOBD_UNSERIALIZABLE_OUTPUT' });
    expect(o.error.message).toContain('output.callback is a function');
    expect(s.stats()).toMatchObject({ children: 1, idle: 1 });
  });

  it('fails clearly on params that cannot be sent to a child', async () => {
    const s = sandbox();
    for (const mode of ['pooled', 'isolated'] as const) {
      const o = failed(await s.run(request('ok.ts', { mode, params: { callback: () => 1 } }), noHooks));
      expect(o.reason).toBe('error');
      expect(o.error).toMatchObject({
        name: 'UnserializableParamsError',
        code: 'JOBD_UNSERIALIZABLE_PARAMS',
      });
    }
    expect(s.stats().busy).toBe(0);
  });

  it('fails clearly on a module without a handler export', async () => {
    const o = failed(await sandbox().run(request('noExport.ts'), noHooks));
    expect(o.error).toMatchObject({ name: 'HandlerLoadError', code: 'JOBD_HANDLER_LOAD' });
  });

  it('coalesces progress: far fewer callbacks than reports, the final value delivered', async () => {
    const calls: Array<[number, string | undefined]> = [];
    const o = completed(
      await sandbox().run(request('progress.ts', { progressIntervalMs: 60_000 }), {
        onProgress: (p, m) => calls.push([p, m]),
      }),
    );
    expect(o.output).toBe('done');
    expect(calls.length).toBeGreaterThanOrEqual(1);
    expect(calls.length).toBeLessThan(10);
    expect(calls.at(-1)).toEqual([100, 'step 100']);
  });

  it('streams megabytes of output to the log file and keeps only a bounded tail', async () => {
    const s = sandbox();
    const req = request('bigOutput.ts', { params: { mb: 16 }, logTailBytes: 1000 });
    const o = completed(await s.run(req, noHooks));
    expect(o.output).toBe(16);
    expect(Buffer.byteLength(o.logTail)).toBeLessThanOrEqual(1000);
    expect(o.logTail.endsWith('LAST LINE OF BIG OUTPUT\n')).toBe(true);
    expect(statSync(req.logFile).size).toBeGreaterThan(16 * 1000 * 1000);
    // The next job's log holds only its own output.
    const next = request('ok.ts');
    completed(await s.run(next, noHooks));
    expect(statSync(next.logFile).size).toBeLessThan(1000);
  });

  it('counts the CPU time of the job', async () => {
    const o = completed(await sandbox().run(request('cpuBound.ts', { params: { ms: 200 } }), noHooks));
    expect(o.resources.cpuMs).toBeGreaterThanOrEqual(190);
  });

  it('applies per-job env and cwd for the duration of the job only', async () => {
    const s = sandbox();
    const o = completed(
      await s.run(request('ok.ts', { env: { JOBD_FIXTURE_ENV: 'yes' }, cwd: tempDir() }), noHooks),
    );
    expect(o.output).toMatchObject({ env: 'yes', cwd: tempDir() });
    const after = completed(await s.run(request('ok.ts'), noHooks));
    expect(after.output).toMatchObject({ env: null });
    expect((after.output as { cwd: string }).cwd).not.toBe(tempDir());
  });

  it("a job's env replaces the child's own value while it runs, whichever job ran before", async () => {
    // The child starts with the daemon's value (children inherit it when they start); jobs with and
    // without the variable follow in it.
    process.env.JOBD_FIXTURE_ENV = 'daemon';
    const seen: unknown[] = [];
    const pids = new Set<unknown>();
    try {
      const s = sandbox({ maxChildren: 1 });
      for (const env of ['a', 'a', undefined, 'b', undefined]) {
        const o = completed(
          await s.run(request('ok.ts', env ? { env: { JOBD_FIXTURE_ENV: env } } : {}), noHooks),
        );
        const out = o.output as { env: unknown; pid: unknown };
        seen.push(out.env);
        pids.add(out.pid);
      }
    } finally {
      delete process.env.JOBD_FIXTURE_ENV;
    }
    expect(seen).toEqual(['a', 'a', 'daemon', 'b', 'daemon']);
    expect(pids.size).toBe(1);
  });

  it('close() kills running and idle children and the running job ends as aborted', async () => {
    const s = sandbox();
    const { pid, outcome } = runReportingPid(s, request('hangs.ts'));
    const busy = await pid;
    const idle = (completed(await s.run(request('ok.ts'), noHooks)).output as { pid: number }).pid;
    expect(s.stats()).toEqual({ children: 2, idle: 1, busy: 1 });
    await s.close();
    expect(s.stats().children).toBe(0);
    expectGone(idle);
    expectGone(busy);
    expect(failed(await outcome).reason).toBe('aborted');
    await expect(s.run(request('ok.ts'), noHooks)).rejects.toThrow('closed');
  });
});

describe('isolated mode', () => {
  it('runs each job in a fresh process that is gone afterwards', async () => {
    const s = sandbox();
    const a = completed(await s.run(request('ok.ts', { mode: 'isolated' }), noHooks));
    const b = completed(await s.run(request('ok.ts', { mode: 'isolated' }), noHooks));
    const pa = (a.output as { pid: number }).pid;
    const pb = (b.output as { pid: number }).pid;
    expect(pa).not.toBe(pb);
    expectGone(pa);
    expectGone(pb);
    expect(s.stats()).toEqual({ children: 0, idle: 0, busy: 0 });
  });

  it('takes megabytes of params in and brings every message out while a program it started holds its channel', async () => {
    const s = sandbox();
    const progress: Array<string | undefined> = [];
    // Far more than a socket buffer: the job is still being written while the child starts reading.
    const text = 'x'.repeat(6 * 1024 * 1024);
    const out = completed(
      await s.run(request('leavesProgram.ts', { mode: 'isolated', params: { text } }), {
        onProgress: (_p, m) => progress.push(m),
      }),
    );
    const { program, textLength } = out.output as { program: number; textLength: number };
    expect(textLength).toBe(text.length);
    expect(progress).toEqual(['started a program']);
    // The program kept the channel open past the child's exit; it was killed with the child's group.
    await vi.waitFor(() => expectGone(program), { timeout: 10_000 });
    expect(s.stats()).toEqual({ children: 0, idle: 0, busy: 0 });
  });

  it('a child whose daemon died (SIGKILL) stops its job and exits by itself', async () => {
    const { parent, pid, exited } = await sandboxParent(tempDir());
    parent.kill('SIGKILL');
    await exited;
    // Its handler ignores SIGTERM and never settles: only the child's own watch ends it.
    await vi.waitFor(() => expectGone(pid), { timeout: 15_000, interval: 100 });
  });

  it('writes output to the log file, appending after earlier attempts, tail only from this attempt', async () => {
    const s = sandbox();
    const req = request('ok.ts', { mode: 'isolated' });
    completed(await s.run(req, noHooks));
    const second = completed(await s.run({ ...req, attempt: 2 }, noHooks));
    const file = readFileSync(req.logFile, 'utf8');
    expect(file).toContain('attempt 1');
    expect(file).toContain('attempt 2');
    expect(second.logTail).toContain('attempt 2');
    expect(second.logTail).not.toContain('attempt 1');
  });

  it('applies env and cwd to the process', async () => {
    const o = completed(
      await sandbox().run(
        request('ok.ts', { mode: 'isolated', env: { JOBD_FIXTURE_ENV: 'iso' }, cwd: tempDir() }),
        noHooks,
      ),
    );
    expect(o.output).toMatchObject({ env: 'iso', cwd: tempDir() });
  });

  it('times out with SIGKILL escalation; the pid is gone', async () => {
    const s = sandbox();
    // The timeout includes the fresh child's start-up; the handler must be running (ignoring SIGTERM)
    // when it fires, so the timeout is set well above what a start-up takes on this machine now.
    const startup =
      completed(await s.run(request('ok.ts', { mode: 'isolated' }), noHooks)).resources.wallMs ?? 3000;
    const { pid, outcome } = runReportingPid(
      s,
      request('hangs.ts', { mode: 'isolated', timeoutMs: Math.max(3000, 5 * startup), killGraceMs: 200 }),
    );
    const o = failed(await outcome);
    expect(o).toMatchObject({ reason: 'timeout', signal: 'SIGKILL', error: { code: 'JOBD_TIMEOUT' } });
    expectGone(await pid);
    expect(s.stats().children).toBe(0);
  });

  it('keeps a bounded tail of big output', async () => {
    const req = request('bigOutput.ts', { mode: 'isolated', params: { mb: 8 }, logTailBytes: 500 });
    const o = completed(await sandbox().run(req, noHooks));
    expect(Buffer.byteLength(o.logTail)).toBeLessThanOrEqual(500);
    expect(o.logTail.endsWith('LAST LINE OF BIG OUTPUT\n')).toBe(true);
    expect(existsSync(req.logFile)).toBe(true);
  });

  it('reports a crash, a serialised error and CPU time', async () => {
    const s = sandbox();
    expect(failed(await s.run(request('exits.ts', { mode: 'isolated' }), noHooks))).toMatchObject({
      reason: 'crash',
      exitCode: 3,
    });
    expect(failed(await s.run(request('doNotRetry.ts', { mode: 'isolated' }), noHooks)).error.code).toBe(
      'JOBD_DO_NOT_RETRY',
    );
    const cpu = completed(
      await s.run(request('cpuBound.ts', { mode: 'isolated', params: { ms: 100 } }), noHooks),
    );
    expect(cpu.resources.cpuMs).toBeGreaterThanOrEqual(100);
  });
});
