/**
 * Mode "inline": a job type's handler runs in the daemon's own process (bin/jobd, real processes).
 * One daemon serves the first cases, run concurrently; the crash case SIGKILLs a daemon of its own.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import { openTestDb, type TestDb } from '../helpers/db.js';
import {
  crashFixture,
  killAllDaemons,
  startDaemonProcess,
  writeDaemonSettings,
  type DaemonProcess,
} from '../helpers/daemonProcess.js';
import { waitForDoc, waitUntil } from '../helpers/waitFor.js';

/** "<jobId> <pid> <attempt>" lines the fixture writes when a run starts. */
function starts(file: string): { jobId: string; pid: number; attempt: number }[] {
  const text = readFileSync(file, 'utf8').trim();
  return text
    ? text.split('\n').map((l) => {
        const [jobId, pid, attempt] = l.split(' ');
        return { jobId: jobId!, pid: Number(pid), attempt: Number(attempt) };
      })
    : [];
}

describe('inline mode: handlers in the daemon process', () => {
  let t: TestDb;
  let client: JobdClient;
  let dir: string;
  let d: DaemonProcess;
  const jobs = (name: string): string => join(import.meta.dirname, '../fixtures/jobs', name);
  const type = {
    inline_probe: { handler: crashFixture('inline.mjs'), mode: 'inline' as const },
    inline_parent: { handler: jobs('parent.mjs'), mode: 'inline' as const },
    combine: { handler: jobs('combine.mjs'), mode: 'inline' as const },
  };

  beforeAll(async () => {
    t = await openTestDb('inline');
    client = await JobdClient.connect({ mongoUri: t.uri, database: t.dbName });
    const s = writeDaemonSettings({ mongoUri: t.uri, database: t.dbName, jobTypes: type });
    dir = s.dir;
    d = await startDaemonProcess(s);
  });
  afterAll(async () => {
    await killAllDaemons();
    await client?.close();
    await t?.close();
  });

  it('completes in the daemon, reports progress and logs, validates output, and keeps errors as a child would', async () => {
    const untilFile = join(dir, 'gate-open');
    const { job } = await client.enqueue('inline_probe', { act: 'gate', untilFile });
    const { job: bad } = await client.enqueue('inline_probe', { act: 'badOutput' }, { maxAttempts: 1 });
    const { job: never } = await client.enqueue('inline_probe', { act: 'doNotRetry' }, { maxAttempts: 3 });

    const running = await waitForDoc(client.store.jobs, { _id: job._id, 'progress.percent': 40 });
    expect(running).toMatchObject({ state: 'running', progress: { percent: 40, message: 'forty' } });
    writeFileSync(untilFile, '');

    const done = await client.waitFor(job._id, { timeoutMs: 90_000 });
    // Run by the daemon itself: no child process.
    expect(done).toMatchObject({ state: 'completed', attempts: 1, result: { pid: d.pid, attempt: 1 } });
    expect((await client.logs(job._id)).text).toMatch(/INFO gate reached \{"attempt":1\}/);

    const refused = await client.waitFor(bad._id, { timeoutMs: 90_000 });
    expect(refused.state).toBe('failed');
    expect(refused.lastError).toMatchObject({ name: 'InvalidOutputError', code: 'JOBD_INVALID_OUTPUT' });
    expect(refused.lastError?.message).toContain('output.pid');

    const gaveUp = await client.waitFor(never._id, { timeoutMs: 90_000 });
    expect(gaveUp).toMatchObject({ state: 'failed', attempts: 1 });
    expect(gaveUp.lastError).toMatchObject({
      code: 'JOBD_DO_NOT_RETRY',
      message: 'this input can never work',
    });
  });

  it('stores the log lines of each attempt once: a retry starts reading where the file ended', async () => {
    const { job } = await client.enqueue('inline_probe', { act: 'logThenFail' }, { maxAttempts: 2 });
    // The retry follows after the default delay (about a second).
    const done = await client.waitFor(job._id, { timeoutMs: 90_000 });
    expect(done).toMatchObject({ state: 'completed', attempts: 2 });
    const { text, source } = await client.logs(job._id);
    expect(source).toBe('database');
    expect(text.match(/INFO attempt \d logged/g)).toEqual(['INFO attempt 1 logged', 'INFO attempt 2 logged']);
  });

  it('spawns children and resumes when they are done, with their results', async () => {
    const { job } = await client.enqueue('inline_parent', { children: 2, childType: 'combine' });
    const done = await client.waitFor(job._id, { timeoutMs: 90_000 });
    expect(done).toMatchObject({
      state: 'completed',
      result: {
        resumed: true,
        children: [
          { key: 'c0', state: 'completed', result: { name: 'c0' } },
          { key: 'c1', state: 'completed', result: { name: 'c1' } },
        ],
      },
    });
  });

  it('a timeout aborts the signal and settles the attempt as timed out although the handler never returns', async () => {
    const abortedFile = join(dir, 'aborted-timeout');
    const { job } = await client.enqueue(
      'inline_probe',
      { act: 'ignoreAbort', abortedFile },
      { timeoutMs: 1_000, maxAttempts: 1 },
    );
    const failed = await client.waitFor(job._id, { timeoutMs: 90_000 });
    expect(failed.state).toBe('failed');
    expect(failed.lastError).toMatchObject({ name: 'JobTimeoutError', code: 'JOBD_TIMEOUT' });
    expect(failed.lastError?.message).toContain('1000 ms');
    expect(readFileSync(abortedFile, 'utf8')).toContain('timed out after 1000 ms');
    expect(d.alive).toBe(true);
  });

  it('a cancel aborts the running handler', async () => {
    const abortedFile = join(dir, 'aborted-cancel');
    const startedFile = join(dir, 'started-cancel');
    writeFileSync(startedFile, '');
    const { job } = await client.enqueue('inline_probe', { act: 'ignoreAbort', abortedFile, startedFile });
    await waitUntil(() => starts(startedFile).length === 1 || undefined, { what: 'the job started' });
    await client.cancel(job._id);
    await d.waitForLog((l) => l.jobId === job._id && l.stage === 'running', { timeoutMs: 90_000 });
    expect(readFileSync(abortedFile, 'utf8')).toMatch(/cancel|lease/i);
    expect((await client.get(job._id))?.state).toBe('cancelled');
  });
});

describe('inline mode: a daemon killed mid-job', () => {
  let t: TestDb;
  let client: JobdClient;
  beforeAll(async () => {
    t = await openTestDb('inline_crash');
    client = await JobdClient.connect({ mongoUri: t.uri, database: t.dbName });
  });
  afterAll(async () => {
    await killAllDaemons();
    await client?.close();
    await t?.close();
  });

  it('SIGKILL mid-job: the job is rescued by its lease and completes on the restarted daemon', async () => {
    const s = writeDaemonSettings({
      mongoUri: t.uri,
      database: t.dbName,
      maintenance: { rescueIntervalMs: 500 },
      jobTypes: { inline_probe: { handler: crashFixture('inline.mjs'), mode: 'inline' } },
    });
    const startedFile = join(s.dir, 'started');
    const untilFile = join(s.dir, 'release');
    writeFileSync(startedFile, '');
    const a = await startDaemonProcess(s);
    const { job } = await client.enqueue('inline_probe', { act: 'gate', startedFile, untilFile });
    await waitUntil(() => starts(startedFile).length === 1 || undefined, { what: 'the job started on A' });
    expect(starts(startedFile)[0]).toMatchObject({ jobId: job._id, pid: a.pid, attempt: 1 });

    a.signal('SIGKILL');
    expect((await a.exited).signal).toBe('SIGKILL');
    expect(await client.get(job._id)).toMatchObject({ state: 'running', lease: { owner: a.workerId } });
    writeFileSync(untilFile, '');

    const b = await startDaemonProcess(s);
    const done = await client.waitFor(job._id, { timeoutMs: 90_000 });
    expect(done).toMatchObject({ state: 'completed', attempts: 2, result: { pid: b.pid, attempt: 2 } });
    expect(done.errors).toEqual([
      expect.objectContaining({ code: 'JOBD_LEASE_EXPIRED', worker: a.workerId, attempt: 1 }),
    ]);
  });
});
