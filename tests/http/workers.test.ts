/**
 * External workers over real HTTP (one server for the file, no daemon: nothing else claims): claim
 * with a lease (and a long poll), heartbeat, progress, complete (checked against a typed type's output
 * schema) and fail, each fenced by the lease token: a write with a token whose lease is gone gets 409
 * naming the job and why. Worker tokens (401/403), the worker registry, and receive() in-process.
 */
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import type { ResolvedConfig } from '../../src/config/types.js';
import { loadConfig } from '../../src/config/load.js';
import { LeaseLostError } from '../../src/errors.js';
import { startHttpServer, type HttpServer } from '../../src/http/server.js';
import { rescueExpired } from '../../src/store/index.js';
import { fixtureHandler, testConfig } from '../integration/daemon-helpers.js';
import { openStoreFixture, type StoreFixture } from '../integration/store-helpers.js';

const ADMIN = 'admin-token-0123456789abcdef';
const READ = 'read-token-0123456789abcdef';
const WORKER = 'worker-token-0123456789abcdef';

let f: StoreFixture;
let server: HttpServer;
let config: ResolvedConfig;
/** Enqueues without input checks (the typed type's input names data-dir files this test has not). */
let enqueuer: JobdClient;
/** A library client with the server's settings, for receive(). */
let lib: JobdClient;

interface Res {
  status: number;
  type: string;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  text: string;
}

async function post(path: string, body: unknown, token: string | null = WORKER): Promise<Res> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const r = await fetch(server.url + path, { method: 'POST', headers, body: JSON.stringify(body) });
  const text = await r.text();
  const type = r.headers.get('content-type') ?? '';
  return { status: r.status, type, text, body: type.includes('json') && text ? JSON.parse(text) : null };
}

function expectProblem(r: Res, status: number, path?: string): void {
  expect(r.status, r.text).toBe(status);
  expect(r.type).toContain('application/problem+json');
  if (path) expect(r.body.errors.map((e: { path: string }) => e.path)).toContain(path);
}

let queueNo = 0;
/** Each case its own queue (an untyped type is its own queue), so cases never take each other's jobs. */
const freshQueue = () => `q${++queueNo}`;

async function enqueue(type: string, params: unknown = {}): Promise<string> {
  return (await enqueuer.enqueue(type, params)).job._id;
}

const claim = (queue: string, body: Record<string, unknown> = {}, token: string | null = WORKER) =>
  post(`/api/queues/${queue}/claim`, { worker: 'w1', leaseMs: 60_000, ...body }, token);

beforeAll(async () => {
  f = await openStoreFixture('http_workers');
  config = {
    ...testConfig(f, { jobTypes: { copy_file: { handler: fixtureHandler('typed.mjs'), maxAttempts: 2 } } }),
    http: {
      host: '127.0.0.1',
      port: 0,
      tokens: [
        { token: ADMIN, role: 'admin' },
        { token: READ, role: 'read' },
        { token: WORKER, role: 'worker' },
      ],
      authReads: false,
      bodyLimitBytes: 64 * 1024,
      rateLimit: { max: 10_000, windowMs: 60_000 },
      corsOrigins: [],
      metricsCacheMs: 0,
    },
  };
  server = await startHttpServer({ config, store: f.store, logger: pino({ level: 'silent' }) });
  enqueuer = JobdClient.over(f.store, { mongoUri: f.t.uri, database: f.t.dbName });
  lib = JobdClient.over(f.store, {
    mongoUri: f.t.uri,
    database: f.t.dbName,
    jobTypes: config.jobTypes,
    pull: { leaseMs: 60_000, retry: config.defaults.retry },
  });
});

afterAll(async () => {
  await server?.close();
  await f?.close();
});

describe('external worker routes', () => {
  it('need a worker or admin token: 401 without, 403 with a read or unknown token', async () => {
    const q = freshQueue();
    expectProblem(await claim(q, {}, null), 401);
    const reader = await claim(q, {}, READ);
    expectProblem(reader, 403);
    expect(reader.body.detail).toContain('worker or admin token');
    expectProblem(await claim(q, {}, 'unknown-token-0123456789abcdef'), 403);
    expect((await claim(q, {}, WORKER)).status).toBe(204);
    expect((await claim(q, {}, ADMIN)).status).toBe(204);
    // A worker token does not make an admin: it may not enqueue or cancel.
    expectProblem(await post('/api/jobs/', { type: 'noop' }, WORKER), 403);
    expectProblem(await post(`/api/jobs/x/heartbeat`, { token: 't' }, READ), 403);
  });

  it('claims, heartbeats, reports progress and completes; the worker shows in the registry', async () => {
    const q = freshQueue();
    const id = await enqueue(q, { n: 3 });
    const c = await claim(q, { worker: 'gpu-1', version: 'py/1' });
    expect(c.status, c.text).toBe(200);
    expect(c.body.job).toMatchObject({ _id: id, state: 'running', attempts: 1, params: { n: 3 } });
    expect(c.body.job.lease.owner).toBe('ext:gpu-1');
    const token = c.body.token as string;
    // The token goes to the claimant beside the job, never inside a job a reader can fetch.
    expect(c.body.job.lease).not.toHaveProperty('token');
    const read = await fetch(`${server.url}/api/jobs/${id}`);
    const seen = (await read.json()) as { lease: Record<string, unknown> };
    expect(seen.lease).toEqual({ owner: 'ext:gpu-1', expiresAt: c.body.expiresAt });
    expect(JSON.stringify(seen)).not.toContain(token);
    const reg = await f.store.workers.findOne({ _id: 'ext:gpu-1' });
    expect(reg).toMatchObject({
      external: true,
      version: 'py/1',
      types: [q],
      running: [id],
      state: 'running',
    });

    const hb = await post(`/api/jobs/${id}/heartbeat`, { token, leaseMs: 120_000 });
    expect(hb.status, hb.text).toBe(200);
    expect(new Date(hb.body.expiresAt).getTime()).toBeGreaterThan(new Date(c.body.expiresAt).getTime());
    expect((await f.store.jobs.findOne({ _id: id }))!.lease!.expiresAt.toISOString()).toBe(hb.body.expiresAt);

    expect((await post(`/api/jobs/${id}/progress`, { token, percent: 40, message: 'half' })).status).toBe(
      204,
    );
    expect((await f.store.jobs.findOne({ _id: id }))!.progress).toMatchObject({
      percent: 40,
      message: 'half',
    });
    expectProblem(await post(`/api/jobs/${id}/progress`, { token, percent: 140 }), 400, 'body.percent');

    const done = await post(`/api/jobs/${id}/complete`, { token, result: { square: 9 }, logTail: 'ok\n' });
    expect(done.status, done.text).toBe(200);
    expect(done.body).toMatchObject({ _id: id, state: 'completed', result: { square: 9 }, logTail: 'ok\n' });
    // A repeat (a retry after a lost reply) reports the same outcome and writes nothing twice.
    const again = await post(`/api/jobs/${id}/complete`, { token, result: { square: 9 } });
    expect(again.status, again.text).toBe(200);
    expect((await enqueuer.events(id)).map((e) => `${e.from}>${e.to}`)).toEqual([
      'null>queued',
      'queued>running',
      'running>completed',
    ]);
    expect((await f.store.workers.findOne({ _id: 'ext:gpu-1' }))!.running).toEqual([]);
  });

  it('long-polls: a claim waiting with `wait` takes a job enqueued meanwhile', async () => {
    const q = freshQueue();
    const t0 = Date.now();
    const pending = claim(q, { wait: 30 });
    // Enqueue once the claim is waiting (its worker is registered before it waits).
    while (!(await f.store.workers.findOne({ _id: 'ext:w1', types: q })))
      await new Promise((r) => setImmediate(r));
    const id = await enqueue(q);
    const c = await pending;
    expect(c.status, c.text).toBe(200);
    expect(c.body.job._id).toBe(id);
    expect(Date.now() - t0).toBeLessThan(30_000);
    // Without a job the wait ends at its bound with 204.
    const t1 = Date.now();
    expect((await claim(freshQueue(), { wait: 0.3 })).status).toBe(204);
    expect(Date.now() - t1).toBeGreaterThanOrEqual(250);
  });

  it('ends a waiting claim with 204 when the server closes, so shutdown is not held up', async () => {
    const other = await startHttpServer({ config, store: f.store, logger: pino({ level: 'silent' }) });
    const q = freshQueue();
    const pending = fetch(`${other.url}/api/queues/${q}/claim`, {
      method: 'POST',
      headers: { authorization: `Bearer ${WORKER}`, 'content-type': 'application/json' },
      body: JSON.stringify({ worker: 'closing', wait: 60 }),
    });
    while (!(await f.store.workers.findOne({ _id: 'ext:closing', types: q })))
      await new Promise((r) => setImmediate(r));
    const t0 = Date.now();
    await other.close();
    expect((await pending).status).toBe(204);
    // Well under the wait, and under fastify's 72 s keep-alive timeout that an open socket would cost.
    expect(Date.now() - t0).toBeLessThan(30_000);
  });

  it('fails an attempt: retried while attempts are left, at once for good with retryable false', async () => {
    const q = freshQueue();
    const a = await enqueue(q);
    const ca = await claim(q);
    const fa = await post(`/api/jobs/${a}/fail`, {
      token: ca.body.token,
      error: { name: 'GpuError', message: 'out of memory', code: 'E_OOM' },
    });
    expect(fa.status, fa.text).toBe(200);
    expect(fa.body).toMatchObject({
      state: 'retrying',
      lastError: { name: 'GpuError', code: 'E_OOM', worker: 'ext:w1' },
    });
    expect(new Date(fa.body.runAt).getTime()).toBeGreaterThan(new Date(fa.body.lastError.at).getTime());

    const q2 = freshQueue();
    const b = await enqueue(q2);
    const cb = await claim(q2, { types: [q2] });
    expect(cb.body.job._id).toBe(b);
    const fb = await post(`/api/jobs/${b}/fail`, {
      token: cb.body.token,
      error: { message: 'bad input file' },
      retryable: false,
      logTail: 'reading...\nbad header',
    });
    expect(fb.body).toMatchObject({ state: 'failed', attempts: 1, logTail: 'reading...\nbad header' });
    expect(fb.body.errors).toHaveLength(1);
  });

  it('refuses a write whose lease is gone with 409 naming the job and why', async () => {
    const q = freshQueue();
    const id = await enqueue(q);
    const first = await claim(q, { worker: 'slow', leaseMs: 1_000 });
    const stale = first.body.token as string;
    expectProblem(await post(`/api/jobs/${id}/heartbeat`, { token: 'not-the-token' }), 409);
    // The lease runs out and the rescuer moves the job (as the daemon's rescue service does).
    const later = new Date(Date.now() + 10 * 60_000);
    const r = await rescueExpired(f.store, { now: later, errorHistory: 10, retryAt: () => new Date(0) });
    expect(r.retrying).toContain(id);
    const hb = await post(`/api/jobs/${id}/heartbeat`, { token: stale });
    expectProblem(hb, 409);
    expect(hb.body.detail).toContain(`job ${id} is no longer held by this lease: it is retrying`);
    expect(hb.body.detail).toContain('lease expired');
    // Another worker takes it; the first one's late writes are refused and change nothing.
    const second = await claim(q, { worker: 'fast' });
    expect(second.body.job).toMatchObject({ _id: id, attempts: 2 });
    const late = await post(`/api/jobs/${id}/complete`, { token: stale, result: { late: true } });
    expectProblem(late, 409);
    expect(late.body.detail).toContain('claimed again (lease of ext:fast)');
    expectProblem(await post(`/api/jobs/${id}/progress`, { token: stale, percent: 99 }), 409);
    expectProblem(await post(`/api/jobs/${id}/fail`, { token: stale, error: { message: 'x' } }), 409);
    const ok = await post(`/api/jobs/${id}/complete`, { token: second.body.token, result: { by: 'fast' } });
    expect(ok.body).toMatchObject({ state: 'completed', result: { by: 'fast' } });
    expect((await f.store.jobs.findOne({ _id: id }))!.progress).toBeNull();
    // Cancelled under a worker: its next write learns so.
    const c = await enqueue(q);
    const held = await claim(q);
    await enqueuer.cancel(c);
    const gone = await post(`/api/jobs/${c}/heartbeat`, { token: held.body.token });
    expectProblem(gone, 409);
    expect(gone.body.detail).toContain('it is cancelled');
    expectProblem(await post(`/api/jobs/nope/heartbeat`, { token: 'x' }), 404);
  });

  it("checks a typed type's result against its output schema (400 naming the field; the lease stays)", async () => {
    const id = await enqueue('copy_file', { source: 'raw/a', target: 'processed/a' });
    const c = await claim('files', { types: ['copy_file'] });
    expect(c.body.job._id).toBe(id);
    const bad = await post(`/api/jobs/${id}/complete`, { token: c.body.token, result: { bytes: 'many' } });
    expectProblem(bad, 400, 'body.result.bytes');
    expect((await f.store.jobs.findOne({ _id: id }))!.state).toBe('running');
    const good = await post(`/api/jobs/${id}/complete`, { token: c.body.token, result: { bytes: 12 } });
    expect(good.body).toMatchObject({ state: 'completed', result: { bytes: 12 } });
    // Bad claims name the field.
    expectProblem(await claim('files', { worker: 'bad name!' }), 400, 'body.worker');
    expectProblem(await claim('files', { leaseMs: 10 }), 400, 'body.leaseMs');
    const outside = await claim('files', { types: ['noop'] });
    expectProblem(outside, 400);
    expect(outside.body.detail).toContain('not in queue "files"');
  });
});

describe('worker tokens in the settings', () => {
  it('take the role worker; an unknown role is refused without showing the token', () => {
    const http = (tokens: unknown) =>
      loadConfig({ env: {}, builtins: () => ({}), overrides: { http: { tokens } } });
    expect(http([{ token: WORKER, role: 'worker' }]).http!.tokens).toEqual([
      { token: WORKER, role: 'worker' },
    ]);
    expect(() => http([{ token: WORKER, role: 'root' }])).toThrow(/http = .*"role":"root".* is not allowed/);
    expect(() => http([{ token: WORKER, role: 'root' }])).not.toThrow(WORKER);
  });
});

describe('receive() in-process', () => {
  it('pulls, heartbeats, reports progress and completes through the library', async () => {
    const q = freshQueue();
    expect(await lib.receive(q, { worker: 'node-1', waitMs: 0 })).toBeNull();
    const id = await enqueue(q, { n: 4 });
    const h = await lib.receive(q, { worker: 'node-1', leaseMs: 5_000 });
    expect(h).not.toBeNull();
    expect(h!.job).toMatchObject({ _id: id, state: 'running' });
    expect(h!.worker).toBe('ext:node-1');
    const before = h!.job.lease!.expiresAt.getTime();
    expect((await h!.heartbeat()).getTime()).toBeGreaterThanOrEqual(before);
    await h!.progress(50, 'half');
    const job = await h!.complete({ square: 16 });
    expect(job).toMatchObject({ state: 'completed', result: { square: 16 } });
  });

  it('a cancelled job refuses its holder with LeaseLostError; a failure is retried', async () => {
    const q = freshQueue();
    const id = await enqueue(q);
    const h = (await lib.receive(q, { worker: 'node-2' }))!;
    await enqueuer.cancel(id);
    await expect(h.heartbeat()).rejects.toBeInstanceOf(LeaseLostError);
    await expect(h.complete({})).rejects.toThrow(/it is cancelled/);
    const id2 = await enqueue(q);
    const h2 = (await lib.receive(q, { worker: 'node-2' }))!;
    expect(h2.id).toBe(id2);
    expect(await h2.fail(new Error('flaky'))).toMatchObject({
      state: 'retrying',
      lastError: { message: 'flaky' },
    });
    // A job claimed for a worker that hung up goes back at once, its attempt returned.
    const q3 = freshQueue();
    const id3 = await enqueue(q3);
    const h3 = (await lib.receive(q3, { worker: 'node-3' }))!;
    expect(h3.id).toBe(id3);
    await lib.pull.giveBack(h3.id, h3.token, 'claimed for a worker that hung up; attempt given back');
    expect(await lib.get(id3)).toMatchObject({ state: 'queued', attempts: 0, lease: null });
    expect((await f.store.workers.findOne({ _id: 'ext:node-3' }))!.running).toEqual([]);
  });
});
