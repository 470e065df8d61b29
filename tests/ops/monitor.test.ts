/**
 * Monitoring commands as subprocesses on a real database: overview's verdict follows the only daemon's
 * death and restart; stale, failed, why and perf name the right jobs.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openTestDb, type TestDb } from '../helpers/db.js';
import { run } from '../cli/proc.js';
import { runInProcess } from '../cli/inProcess.js';
import { waitForCount, waitUntil } from '../helpers/waitFor.js';
import { killAllDaemons, startDaemonProcess, writeDaemonSettings } from '../helpers/daemonProcess.js';
import { insertJobs, jobDoc } from './jobDocs.js';

let t: TestDb;
beforeEach(async () => {
  t = await openTestDb('monitor');
});
afterEach(async () => {
  await killAllDaemons();
  await t.close();
});

function jobctl(args: string[], extra: string[] = []) {
  return run('jobctl', [...args, '--mongo-uri', t.uri, '--database', t.dbName, ...extra], {
    timeoutMs: 60_000,
  });
}

const MIN = 60_000;

describe('jobctl overview', () => {
  it('turns critical when the only daemon is SIGKILLed with jobs queued, and healthy after a restart', async () => {
    const s = writeDaemonSettings({ mongoUri: t.uri, database: t.dbName, worker: { leaseMs: 2_000 } });
    const opts = ['--settings', s.file];
    let d = await startDaemonProcess(s);
    const healthy = await run('jobctl', ['overview', '--json', ...opts]);
    expect(healthy.code, healthy.stdout + healthy.stderr).toBe(0);
    expect(JSON.parse(healthy.stdout)).toMatchObject({ verdict: 'healthy', workers: { alive: 1 } });

    d.signal('SIGKILL');
    await d.exited;
    await insertJobs(t.db, [jobDoc({ type: 'noop' }), jobDoc({ type: 'noop' })]);
    // The worker is taken for dead two lease periods after its last heartbeat. Polled in-process (each
    // real jobctl costs about 1 CPU-s); overview's exit codes as a process: the healthy run above, and
    // the tests below (5 and 6).
    const critical = await waitUntil(
      async () => {
        const r = await runInProcess(['overview', '--json', ...opts]);
        return r.code === 6 ? r : undefined;
      },
      { what: 'overview to turn critical', timeoutMs: 60_000, intervalMs: 500 },
    );
    const o = JSON.parse(critical.stdout) as {
      verdict: string;
      reasons: { code: string }[];
      workers: { dead: number };
    };
    expect(o.verdict).toBe('critical');
    expect(o.reasons.map((r) => r.code)).toContain('no-live-worker');
    expect(o.workers.dead).toBe(1);
    expect((await runInProcess(['overview', ...opts])).stdout).toContain('CRITICAL');

    d = await startDaemonProcess(s);
    await waitUntil(async () => (await runInProcess(['overview', ...opts])).code === 0, {
      what: 'overview to be healthy again',
      timeoutMs: 60_000,
      intervalMs: 500,
    });
    // Healthy says a daemon is alive, not that it has run the queue yet: wait for both jobs.
    await waitForCount(t.db.collection('jobs'), { state: 'completed' }, 2, {
      what: 'the restarted daemon to run the two queued jobs',
      timeoutMs: 60_000,
    });
    await d.stop();
  });

  it('reports an unreachable database as critical (exit 6)', async () => {
    const r = await run('jobctl', [
      'overview',
      '--json',
      '--mongo-uri',
      'mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500',
      '--database',
      'x',
    ]);
    expect(r.code).toBe(6);
    expect(JSON.parse(r.stdout)).toMatchObject({
      verdict: 'critical',
      reasons: [{ code: 'database-unreachable' }],
    });
  });

  it('warns on a high failure rate and on stale jobs', async () => {
    const now = Date.now();
    const finished = Array.from({ length: 10 }, (_, i) =>
      jobDoc({
        state: i < 4 ? 'failed' : 'completed',
        finishedAt: new Date(now - 5 * MIN),
        startedAt: new Date(now - 6 * MIN),
        attempts: 1,
      }),
    );
    await insertJobs(t.db, finished);
    const r = await jobctl(['overview', '--json']);
    expect(r.code).toBe(5);
    const o = JSON.parse(r.stdout) as { reasons: { code: string }[]; lastHour: { failureRate: number } };
    expect(o.lastHour.failureRate).toBeCloseTo(0.4);
    expect(o.reasons.map((x) => x.code)).toEqual(['failure-rate']);
  });
});

describe('jobctl stale, failed, perf', () => {
  it('stale names running jobs with an expired lease or no progress, with worker and pid', async () => {
    const now = Date.now();
    await t.db.collection('workers').insertOne({
      _id: 'host:4242:abc',
      host: 'host',
      pid: 4242,
      version: '0',
      startedAt: new Date(now - 10 * MIN),
      heartbeatAt: new Date(now - 10 * MIN),
      concurrency: 2,
      running: [],
      state: 'running',
      types: ['echo'],
    } as never);
    const [expired, noProgress, fine] = await insertJobs(t.db, [
      jobDoc({
        state: 'running',
        startedAt: new Date(now - 2 * MIN),
        lease: { owner: 'host:4242:abc', token: 'a', expiresAt: new Date(now - MIN) },
      }),
      jobDoc({
        state: 'running',
        startedAt: new Date(now - 90 * MIN),
        progress: { percent: 10, updatedAt: new Date(now - 60 * MIN) },
        lease: { owner: 'other', token: 'b', expiresAt: new Date(now + 10 * MIN) },
      }),
      jobDoc({
        state: 'running',
        startedAt: new Date(now - MIN),
        progress: { percent: 50, updatedAt: new Date(now) },
        lease: { owner: 'other', token: 'c', expiresAt: new Date(now + 10 * MIN) },
      }),
    ]);
    const r = await jobctl(['stale', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const jobs = (
      JSON.parse(r.stdout) as { jobs: { id: string; why: string; pid: number | null; worker: string }[] }
    ).jobs;
    expect(jobs.map((j) => j.id).sort()).toEqual([expired, noProgress].sort());
    expect(jobs.find((j) => j.id === expired)).toMatchObject({
      why: 'lease expired',
      pid: 4242,
      worker: 'host:4242:abc',
    });
    expect(jobs.find((j) => j.id === noProgress)).toMatchObject({ why: 'no progress' });
    expect(jobs.map((j) => j.id)).not.toContain(fine);
  });

  it('failed groups failures of the window by type and code, with a sample', async () => {
    const now = Date.now();
    const err = (code: string, message: string) => ({
      name: 'Error',
      code,
      message,
      at: new Date(now),
      attempt: 3,
    });
    const [a] = await insertJobs(t.db, [
      jobDoc({
        type: 'rsync_transfer',
        state: 'failed',
        finishedAt: new Date(now - MIN),
        lastError: err('RSYNC_23', 'partial transfer'),
      }),
      jobDoc({
        type: 'rsync_transfer',
        state: 'failed',
        finishedAt: new Date(now - 2 * MIN),
        lastError: err('RSYNC_23', 'partial transfer (older)'),
      }),
      jobDoc({
        type: 'echo',
        state: 'failed',
        finishedAt: new Date(now - 3 * MIN),
        lastError: err('JOBD_TIMEOUT', 'timed out'),
      }),
      jobDoc({
        type: 'echo',
        state: 'failed',
        finishedAt: new Date(now - 30 * 3_600_000),
        lastError: err('OLD', 'outside the window'),
      }),
    ]);
    const r = await jobctl(['failed', '--hours', '24', '--json']);
    const groups = (
      JSON.parse(r.stdout) as {
        groups: { type: string; code: string; count: number; sampleJobId: string; sampleMessage: string }[];
      }
    ).groups;
    expect(groups).toHaveLength(2);
    expect(groups[0]).toMatchObject({
      type: 'rsync_transfer',
      code: 'RSYNC_23',
      count: 2,
      sampleJobId: a,
      sampleMessage: 'partial transfer',
    });
    expect(groups[1]).toMatchObject({ type: 'echo', code: 'JOBD_TIMEOUT', count: 1 });
  });

  it('perf computes counts, success rate and run/wait percentiles in the database', async () => {
    const now = Date.now();
    const docs = Array.from({ length: 20 }, (_, i) => {
      const created = now - 60 * MIN;
      const started = created + (i + 1) * 1000; // wait 1..20 s
      return jobDoc({
        type: 'echo',
        state: i === 0 ? 'failed' : 'completed',
        attempts: i < 5 ? 2 : 1,
        createdAt: new Date(created),
        startedAt: new Date(started),
        finishedAt: new Date(started + (i + 1) * 100),
      }); // run 100..2000 ms
    });
    await insertJobs(t.db, docs);
    const r = await jobctl(['perf', '--days', '1', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const row = (JSON.parse(r.stdout) as { types: Record<string, number>[] }).types[0]!;
    expect(row).toMatchObject({
      type: 'echo',
      count: 20,
      completed: 19,
      failed: 1,
      runMaxMs: 2000,
      attemptsPerJob: 1.25,
    });
    expect(row.successRate).toBeCloseTo(0.95);
    // MongoDB's approximate percentile returns an input value: the ceil(p·n)-th smallest.
    expect(row.runP50Ms).toBe(1000);
    expect(row.runP95Ms).toBe(1900);
    expect(row.waitP50Ms).toBe(10_000);
    expect(row.throughputPerHour).toBeCloseTo(20 / 24);
  });
});

describe('jobctl why', () => {
  it('names dependencies, a future runAt, a backoff, a paused queue and no daemon for the type', async () => {
    const now = Date.now();
    await t.db.collection('workers').insertOne({
      _id: 'live',
      host: 'h',
      pid: 1,
      version: '0',
      startedAt: new Date(now),
      heartbeatAt: new Date(now + 60 * MIN),
      concurrency: 4,
      running: [],
      state: 'running',
      types: ['echo'],
    } as never);
    const [dep, waiting, future, backoff, paused, unserved] = await insertJobs(t.db, [
      jobDoc({ type: 'echo' }),
      jobDoc({ type: 'echo', state: 'waiting' }),
      jobDoc({ type: 'echo', runAt: new Date(now + 60 * MIN) }),
      jobDoc({
        type: 'echo',
        state: 'retrying',
        attempts: 1,
        runAt: new Date(now + 30 * MIN),
        lastError: {
          name: 'Error',
          code: 'E_NET',
          message: 'connection reset',
          at: new Date(now),
          attempt: 1,
        },
      }),
      jobDoc({ type: 'echo' }),
      jobDoc({ type: 'convert_mrc' }),
    ]);
    await t.db
      .collection('jobs')
      .updateOne({ _id: waiting } as never, { $set: { dependsOn: [dep], waitingFor: 'dependencies' } });
    // The first as a real process, the others in-process.
    let real = true;
    const why = async (id: string) => {
      const args = ['why', id, '--json', '--mongo-uri', t.uri, '--database', t.dbName];
      const r = real ? await jobctl(['why', id, '--json']) : await runInProcess(args);
      real = false;
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as {
        reasons: { code: string; message: string; jobs?: { id: string }[] }[];
      };
    };
    const w = await why(waiting!);
    expect(w.reasons[0]).toMatchObject({ code: 'dependencies', jobs: [{ id: dep, state: 'queued' }] });
    expect((await why(future!)).reasons.map((r) => r.code)).toContain('run-at');
    const b = await why(backoff!);
    expect(b.reasons[0]!.code).toBe('backoff');
    expect(b.reasons[0]!.message).toContain('connection reset');
    expect((await why(unserved!)).reasons.map((r) => r.code)).toContain('no-daemon');
    expect((await why(paused!)).reasons.map((r) => r.code)).not.toContain('queue-paused');
    await t.db.collection('queues').insertOne({
      _id: 'echo',
      paused: true,
      pausedAt: new Date(now),
      updatedAt: new Date(now),
      by: 'ops',
    } as never);
    const p = await why(paused!);
    expect(p.reasons.map((r) => r.code)).toContain('queue-paused');
    expect((await runInProcess(['why', 'nope', '--mongo-uri', t.uri, '--database', t.dbName])).code).toBe(3);
  });
});
