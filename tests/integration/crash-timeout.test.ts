/**
 * Timeouts in a real daemon process: a handler that ignores SIGTERM and never finishes is killed
 * (its pid is gone before the attempt is recorded), retried with growing delays, and fails after
 * maxAttempts with JOBD_TIMEOUT. Also: a SIGTERMed daemon drains, re-queues what is past the grace
 * without burning attempts, removes its pidfile and exits 0.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import { openTestDb, type TestDb } from '../helpers/db.js';
import {
  crashFixture,
  killAllDaemons,
  pidAlive,
  startDaemonProcess,
  writeDaemonSettings,
} from '../helpers/daemonProcess.js';
import { waitUntil } from '../helpers/waitFor.js';

// Long enough for a fresh child to start and load the handler on a busy machine (the timeout counts
// from when the job is handed to the child, start-up included).
const TIMEOUT_MS = 5_000;
const RETRY = { baseMs: 300, factor: 3, capMs: 10_000, jitter: 0 };

function lines(file: string): string[] {
  const text = readFileSync(file, 'utf8').trim();
  return text ? text.split('\n') : [];
}

describe('crash: timeouts and shutdown in a daemon process', () => {
  let t: TestDb;
  let client: JobdClient;
  beforeEach(async () => {
    t = await openTestDb('crash_timeout');
    client = await JobdClient.connect({ mongoUri: t.uri, database: t.dbName });
  });
  afterEach(async () => {
    await killAllDaemons();
    await client.close();
    await t.close();
  });

  it('a handler past its timeout is killed, retried with growing delays, and fails with JOBD_TIMEOUT', async () => {
    const s = writeDaemonSettings({
      mongoUri: t.uri,
      database: t.dbName,
      worker: { killGraceMs: 300 },
      jobTypes: {
        stubborn: {
          handler: crashFixture('stubborn.mjs'),
          mode: 'isolated',
          timeoutMs: TIMEOUT_MS,
          maxAttempts: 3,
          retry: RETRY,
        },
      },
    });
    const pidFile = join(s.dir, 'pids.txt');
    writeFileSync(pidFile, '');
    const d = await startDaemonProcess(s);
    const { job } = await client.enqueue('stubborn', { pidFile }, { maxAttempts: 3, timeoutMs: TIMEOUT_MS });

    const ofJob =
      (msg: string, attempt: number) => (l: { msg: string; jobId?: unknown; attempt?: unknown }) =>
        l.msg === msg && l.jobId === job._id && l.attempt === attempt;
    const retryRunAt: number[] = [];
    for (const attempt of [1, 2, 3]) {
      const line = await d.waitForLog(ofJob(attempt < 3 ? 'job retrying' : 'job failed', attempt));
      expect(line.code).toBe('JOBD_TIMEOUT');
      if (attempt < 3) retryRunAt.push(new Date(String(line.runAt)).getTime());
      // The attempt is recorded: the handler's process must already be gone.
      const pid = Number(lines(pidFile)[attempt - 1]);
      expect(pid).toBeGreaterThan(0);
      expect(() => process.kill(pid, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }));
    }
    expect(lines(pidFile)).toHaveLength(3);

    const doc = (await client.get(job._id))!;
    expect(doc).toMatchObject({
      state: 'failed',
      attempts: 3,
      lease: null,
      lastError: { name: 'JobTimeoutError', code: 'JOBD_TIMEOUT', attempt: 3 },
    });
    expect(doc.errors.map((e) => [e.code, e.attempt])).toEqual([
      ['JOBD_TIMEOUT', 1],
      ['JOBD_TIMEOUT', 2],
      ['JOBD_TIMEOUT', 3],
    ]);

    const events = await client.events(job._id);
    expect(events.map((e) => e.to)).toEqual([
      'queued',
      'running',
      'retrying',
      'running',
      'retrying',
      'running',
      'failed',
    ]);
    const at = events.map((e) => e.at.getTime());
    // Each retry was scheduled base * factor^(n-1) after its failure (jitter 0): runAt and the stored
    // error's time come from the same clock reading at the failure, so the delays are exact (300 ms,
    // then 900 ms) however late the 'retrying' event is written on a busy machine...
    const failedAt = doc.errors.map((e) => new Date(e.at as Date).getTime());
    expect([retryRunAt[0]! - failedAt[0]!, retryRunAt[1]! - failedAt[1]!]).toEqual([
      RETRY.baseMs,
      RETRY.baseMs * RETRY.factor,
    ]);
    // ...and no attempt started before its runAt.
    expect(at[3]).toBeGreaterThanOrEqual(retryRunAt[0]!);
    expect(at[5]).toBeGreaterThanOrEqual(retryRunAt[1]!);
    // Each failure is the timeout: the attempt started, ran past timeoutMs, and was then recorded.
    for (const [claim, fail] of [
      [1, 2],
      [3, 4],
      [5, 6],
    ] as const) {
      expect(at[fail]! - at[claim]!).toBeGreaterThanOrEqual(TIMEOUT_MS);
      expect(events[fail]!.message).toContain('JOBD_TIMEOUT');
    }
    expect(d.alive).toBe(true);
    expect((await d.stop()).code).toBe(0);
  });

  it('SIGTERM drains: a job finishing within the grace completes, the rest go back to queued with attempts unchanged', async () => {
    const s = writeDaemonSettings({
      mongoUri: t.uri,
      database: t.dbName,
      worker: { concurrency: 4, shutdownGraceMs: 2_500, killGraceMs: 300 },
      jobTypes: { block: { handler: crashFixture('block.mjs'), mode: 'pooled' } },
    });
    const startedFile = join(s.dir, 'started.txt');
    writeFileSync(startedFile, '');
    const d = await startDaemonProcess(s);
    expect(readFileSync(s.pidFile, 'utf8').trim()).toBe(String(d.pid));

    const { job: quick } = await client.enqueue('block', { ms: 800, startedFile });
    const long = await client.enqueueMany([1, 2].map(() => ({ type: 'block', params: { startedFile } })));
    const longIds = long.map((r) => r.job._id);
    const runs = await waitUntil(
      () => {
        const l = lines(startedFile);
        return l.length === 3
          ? l.map((x) => ({ jobId: x.split(' ')[0]!, pid: Number(x.split(' ')[1]) }))
          : undefined;
      },
      { what: 'three jobs running' },
    );

    d.signal('SIGTERM');
    const exit = await d.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(existsSync(s.pidFile)).toBe(false);

    expect(await client.get(quick._id)).toMatchObject({
      state: 'completed',
      attempts: 1,
      result: { ppid: d.pid },
    });
    for (const id of longIds) {
      const doc = (await client.get(id))!;
      expect(doc).toMatchObject({ state: 'queued', attempts: 0, lease: null });
      expect(doc.errors).toEqual([]);
      expect((await client.events(id)).map((e) => [e.from, e.to])).toEqual([
        [null, 'queued'],
        ['queued', 'running'],
        ['running', 'queued'],
      ]);
      expect(d.lines().some((l) => l.msg === 'job requeued' && l.jobId === id)).toBe(true);
    }
    // No handler outlived the daemon.
    for (const r of runs) expect(pidAlive(r.pid)).toBe(false);
    expect(d.lines().some((l) => l.msg === 'jobd stopped')).toBe(true);
  });
});
