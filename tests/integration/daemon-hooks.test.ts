/**
 * Lifecycle hooks through a daemon and its real sandbox children: order and arguments (onStart each
 * attempt, onRetry with the attempt and the very delay the daemon writes, onFailure after the last
 * attempt only, onSuccess with the result), hooks that throw or hang (recorded, outcome unchanged),
 * and a killed child (a fresh child runs onFailure).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { enqueue, eventsOf, get } from '../../src/store/index.js';
import { startDaemon, type Daemon } from '../../src/worker/daemon.js';
import type { DaemonEvents } from '../../src/worker/events.js';
import { FINISHED_STATES, type EnqueueOptions, type JobDoc } from '../../src/types.js';
import { waitUntil } from '../helpers/waitFor.js';
import { fixtureHandler, testConfig } from './daemon-helpers.js';
import { newJob, openStoreFixture, type StoreFixture } from './store-helpers.js';

interface HookCall {
  call: string;
  attempt: number;
  pid: number;
  result?: unknown;
  error?: { name?: string; code?: string; message: string };
  attemptArg?: number;
  delayMs?: number;
}

const RANDOM = 0.37;
const RETRY = { baseMs: 200, factor: 2, capMs: 5_000, jitter: 0.5 };

describe('daemon: lifecycle hooks', () => {
  let f: StoreFixture;
  let d: Daemon | null = null;
  let logDir = '';
  const retrying: DaemonEvents['job:retrying'][] = [];
  const hookFailed: DaemonEvents['hook:failed'][] = [];

  beforeEach(async () => {
    f = await openStoreFixture('daemon_hooks');
    const handler = fixtureHandler('hooks.mjs');
    const config = testConfig(f, {
      worker: { hookTimeoutMs: 1_000 },
      jobTypes: {
        hooks: { handler, maxAttempts: 3, retry: RETRY },
        hooksIsolated: { handler, mode: 'isolated', retry: RETRY },
        hooksThrowing: { handler },
        hooksHanging: { handler },
        hooksKilled: { handler },
      },
    });
    logDir = config.logDir;
    d = await startDaemon({ config, logger: pino({ level: 'silent' }), random: () => RANDOM });
    retrying.length = 0;
    hookFailed.length = 0;
    d.on('job:retrying', (p) => retrying.push(p));
    d.on('hook:failed', (p) => hookFailed.push(p));
  });
  afterEach(async () => {
    await d?.stop({ graceMs: 0 });
    d = null;
    await f.close();
  });

  async function run(
    type: string,
    params: Record<string, unknown> = {},
    opts: EnqueueOptions = {},
  ): Promise<JobDoc> {
    const { job } = await enqueue(f.store, newJob(type, params, opts, new Date()), new Date());
    return waitUntil(
      async () => {
        const j = await get(f.store, job._id);
        return j && FINISHED_STATES.includes(j.state) ? j : undefined;
      },
      { timeoutMs: 60_000, what: `job ${job._id} (${type}) finished` },
    );
  }

  function calls(job: JobDoc): HookCall[] {
    const file = join(logDir, `${job._id}.log.hooks`);
    if (!existsSync(file)) return [];
    return readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as HookCall);
  }

  it(
    'run in order with their arguments; onRetry gets the delay the daemon writes',
    { timeout: 90_000 },
    async () => {
      const job = await run('hooks', { failUntil: 3 });
      expect(job.state).toBe('completed');
      const seen = calls(job);
      expect(seen.map((c) => `${c.call}@${c.attempt}`)).toEqual([
        'onStart@1',
        'handler@1',
        'onRetry@1',
        'onStart@2',
        'handler@2',
        'onRetry@2',
        'onStart@3',
        'handler@3',
        'onSuccess@3',
      ]);
      const retries = seen.filter((c) => c.call === 'onRetry');
      expect(retries.map((c) => c.attemptArg)).toEqual([1, 2]);
      expect(retries[0]!.error?.message).toBe('attempt 1 failed');
      // The child decided with the daemon's own decision and random draw: the same delays.
      const daemonDelays = retrying.filter((r) => r.jobId === job._id).map((r) => r.delayMs);
      expect(retries.map((c) => c.delayMs)).toEqual(daemonDelays);
      expect(daemonDelays).toEqual([
        Math.round(200 * (1 - 0.5 * RANDOM)),
        Math.round(400 * (1 - 0.5 * RANDOM)),
      ]);
      expect(seen.find((c) => c.call === 'onSuccess')?.result).toEqual({ ok: 3 });
      expect(job.hookErrors ?? []).toEqual([]);
    },
  );

  it('onFailure runs after the last attempt only (isolated children too)', { timeout: 90_000 }, async () => {
    const job = await run('hooksIsolated', { failUntil: 99 }, { maxAttempts: 2 });
    expect(job.state).toBe('failed');
    expect(calls(job).map((c) => `${c.call}@${c.attempt}`)).toEqual([
      'onStart@1',
      'handler@1',
      'onRetry@1',
      'onStart@2',
      'handler@2',
      'onFailure@2',
    ]);
    const once = await run('hooks', { doNotRetry: true });
    const seen = calls(once);
    expect(seen.map((c) => c.call)).toEqual(['onStart', 'handler', 'onFailure']);
    expect(seen[2]!.error).toMatchObject({ name: 'DoNotRetryError', message: 'refused for good' });
  });

  it('a hook that throws or hangs is recorded and changes nothing', { timeout: 90_000 }, async () => {
    const job = await run('hooksThrowing');
    expect(job.state).toBe('completed');
    expect(job.result).toEqual({ ok: 1 });
    expect(calls(job).map((c) => c.call)).toEqual(['onStart', 'handler', 'onSuccess']);
    expect(job.hookErrors).toMatchObject([
      { hook: 'onStart', name: 'Error', message: 'onStart broke', attempt: 1 },
      { hook: 'onSuccess', name: 'TypeError', message: 'onSuccess broke', attempt: 1 },
    ]);
    // The daemon reports after its write lands, which the test may see first.
    await waitUntil(() => hookFailed.filter((h) => h.jobId === job._id).length >= 2, {
      what: 'hook:failed events',
    });
    expect(hookFailed.filter((h) => h.jobId === job._id).map((h) => h.hook)).toEqual([
      'onStart',
      'onSuccess',
    ]);
    const history = await eventsOf(f.store, job._id);
    expect(history.at(-1)).toMatchObject({ to: 'completed' });
    expect(history.at(-1)?.message).toContain('hook onSuccess failed: TypeError: onSuccess broke');

    const hung = await run('hooksHanging');
    expect(hung.state).toBe('completed');
    expect(hung.result).toEqual({ ok: 1 });
    expect(hung.hookErrors).toMatchObject([{ hook: 'onSuccess', code: 'JOBD_HOOK_TIMEOUT' }]);
  });

  it('a killed child (timeout): a fresh child runs onFailure', { timeout: 90_000 }, async () => {
    const job = await run('hooksKilled', { hang: true }, { maxAttempts: 1, timeoutMs: 6_000 });
    expect(job.state).toBe('failed');
    expect(job.lastError?.code).toBe('JOBD_TIMEOUT');
    const seen = calls(job);
    expect(seen.map((c) => c.call)).toEqual(['onStart', 'handler', 'onFailure']);
    expect(seen[2]!.error?.code).toBe('JOBD_TIMEOUT');
    expect(seen[2]!.pid).not.toBe(seen[1]!.pid);
  });
});
