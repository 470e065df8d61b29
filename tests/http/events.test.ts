/**
 * GET /api/events over real HTTP, against one daemon for the whole file: every transition of 1,000
 * jobs the daemon runs arrives in order per job; a client that disconnects and comes back with
 * Last-Event-ID gets the rest with no gap and nothing twice; filters, heartbeats, token rules, bad
 * resume points; and the stream is closed, with a reason, when the server shuts down.
 */
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import type { ResolvedConfig } from '../../src/config/types.js';
import { startDaemon, type Daemon } from '../../src/worker/daemon.js';
import { SseClient, type SseEvent } from '../helpers/sse.js';
import { testConfig } from '../integration/daemon-helpers.js';
import { openStoreFixture, type StoreFixture } from '../integration/store-helpers.js';

const ADMIN = 'admin-token-0123456789abcdef';
const READ = 'read-token-0123456789abcdef';
const auth = { authorization: `Bearer ${READ}` };

let f: StoreFixture;
let d: Daemon;
let base = '';
let client: JobdClient;

interface T {
  jobId: string;
  type: string;
  queue: string;
  seq: number;
  state: string;
  attempt: number;
  worker: string | null;
  at: string;
}

const parsed = new WeakMap<SseEvent, T>();
const transitions = (events: SseEvent[], ids?: Set<string>): T[] =>
  events
    .filter((e) => e.event === 'transition')
    .map((e) => {
      let t = parsed.get(e);
      if (!t) parsed.set(e, (t = JSON.parse(e.data) as T));
      return t;
    })
    .filter((t) => !ids || ids.has(t.jobId));

/** Counts of a client's transitions of `ids`, kept up to date as events arrive (checks stay cheap). */
function counter(c: SseClient, ids: Set<string>) {
  let at = 0;
  const n = { all: 0, completed: 0 };
  return () => {
    for (; at < c.events.length; at++) {
      const e = c.events[at]!;
      if (e.event !== 'transition') continue;
      const t = JSON.parse(e.data) as T;
      if (!ids.has(t.jobId)) continue;
      n.all++;
      if (t.state === 'completed') n.completed++;
    }
    return n;
  };
}

beforeAll(async () => {
  f = await openStoreFixture('http_events');
  const config: ResolvedConfig = {
    ...testConfig(f, { worker: { concurrency: 8, claimBatchSize: 25 } }),
    http: {
      host: '127.0.0.1',
      port: 0,
      tokens: [
        { token: ADMIN, role: 'admin' },
        { token: READ, role: 'read' },
      ],
      authReads: true,
      bodyLimitBytes: 64 * 1024,
      rateLimit: null,
      corsOrigins: [],
      metricsCacheMs: 0,
      eventHeartbeatMs: 200,
    },
  };
  d = await startDaemon({ config, logger: pino({ level: process.env.JOBD_TEST_LOG ?? 'silent' }) });
  base = d.httpUrl!;
  client = JobdClient.over(f.store, { mongoUri: f.t.uri, database: f.t.dbName });
});

afterAll(async () => {
  await d?.stop({ graceMs: 0 });
  await f?.close();
});

describe('GET /api/events', () => {
  it('delivers every transition of 1,000 jobs in order per job, and resumes with Last-Event-ID without a gap', async () => {
    const all = await SseClient.open(`${base}/api/events?type=noop`, auth);
    const first = await SseClient.open(`${base}/api/events`, auth);
    expect(all.status).toBe(200);
    expect(all.headers.get('content-type')).toContain('text/event-stream');
    const results = await client.enqueueMany(
      Array.from({ length: 1000 }, (_, n) => ({ type: 'noop', params: { n } })),
    );
    const ids = new Set(results.map((r) => r.job._id));
    expect(ids.size).toBe(1000);

    // Disconnect part-way, while the daemon is still running the jobs.
    const firstN = counter(first, ids);
    await first.until(() => firstN().all >= 1200, '1200 transitions on the first connection');
    await first.close();
    const resumeAt = first.lastId;
    expect(resumeAt).toBeTruthy();
    const second = await SseClient.open(`${base}/api/events`, { ...auth, 'last-event-id': resumeAt! });
    expect(second.status, second.body).toBe(200);
    const secondN = counter(second, ids);

    const allN = counter(all, ids);
    await all.until(() => allN().completed === 1000, 'all 1000 jobs completed (type filter)');
    await second.until(() => secondN().completed + firstN().completed >= 1000, 'the rest after resuming');
    // What arrived after the last completion: nothing of these jobs may follow.
    const seen = transitions(all.events, ids);
    expect(seen).toHaveLength(3000);
    const byJob = new Map<string, T[]>();
    for (const t of seen) byJob.set(t.jobId, [...(byJob.get(t.jobId) ?? []), t]);
    for (const [, ts] of byJob) {
      expect(ts.map((t) => t.seq)).toEqual([1, 2, 3]);
      expect(ts.map((t) => t.state)).toEqual(['queued', 'running', 'completed']);
      expect(ts[1]!.worker).toBe(d.workerId);
      expect(ts[2]!.attempt).toBe(1);
      expect(ts.every((t) => t.type === 'noop' && t.queue === 'noop')).toBe(true);
    }
    // Every event of the first stream's id is unique, and the two connections together hold every
    // transition exactly once.
    const union = [...transitions(first.events, ids), ...transitions(second.events, ids)].map(
      (t) => `${t.jobId}:${t.seq}`,
    );
    expect(new Set(union).size).toBe(union.length);
    expect(union).toHaveLength(3000);
    expect(transitions(first.events, ids).length).toBeGreaterThanOrEqual(1200);
    expect(transitions(second.events, ids).length).toBeGreaterThan(0);
    await all.close();
    await second.close();
  });

  it('filters by job and status, and sends heartbeat comments on a quiet stream', async () => {
    const { job } = await client.enqueue('noop', {}, { runAt: new Date(Date.now() + 3_600_000) });
    const c = await SseClient.open(`${base}/api/events?job=${job._id}&status=completed`, auth);
    expect(c.status).toBe(200);
    // Quiet: only heartbeats (one every 200 ms here) until the job runs.
    await c.until(() => c.comments >= 3, 'three comment lines (connected + heartbeats)', 30_000);
    expect(c.events).toHaveLength(0);
    const other = await client.enqueue('noop', { other: true });
    await client.runNow(job._id);
    await c.until(() => c.events.length >= 1, 'the job completed');
    await client.waitFor(other.job._id, { timeoutMs: 60_000 });
    const [t] = transitions(c.events);
    expect(t).toMatchObject({ jobId: job._id, state: 'completed', seq: 3 });
    expect(c.events).toHaveLength(1);
    await c.close();
  });

  it('keeps the token rules and refuses bad input as problem+json naming the field', async () => {
    const none = await SseClient.open(`${base}/api/events`);
    expect(none.status).toBe(401);
    const wrong = await SseClient.open(`${base}/api/events`, {
      authorization: 'Bearer not-a-token-0123456789abc',
    });
    expect(wrong.status).toBe(403);
    const badId = await SseClient.open(`${base}/api/events`, { ...auth, 'last-event-id': 'nonsense!' });
    expect(badId.status).toBe(400);
    expect(badId.headers.get('content-type')).toContain('application/problem+json');
    expect(JSON.parse(badId.body).errors[0].path).toBe('headers.last-event-id');
    const badState = await SseClient.open(`${base}/api/events?status=done`, auth);
    expect(badState.status).toBe(400);
    expect(badState.body).toContain('status');
  });

  it('is listed in the OpenAPI document', async () => {
    const r = await fetch(`${base}/openapi.json`, { headers: auth });
    const doc = (await r.json()) as { paths: Record<string, Record<string, unknown>> };
    expect(doc.paths['/api/events']?.get).toBeDefined();
    expect(doc.paths['/api/jobs/{id}/logs']?.get).toBeDefined();
  });

  it('is closed with a reason when the server shuts down', async () => {
    const c = await SseClient.open(`${base}/api/events`, auth);
    expect(c.status).toBe(200);
    await d.stop({ graceMs: 0 });
    await c.closed();
    const last = c.events[c.events.length - 1]!;
    expect(last.event).toBe('error');
    expect(JSON.parse(last.data).reason).toBe('shutdown');
  });
});
