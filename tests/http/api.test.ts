/**
 * The HTTP API over real HTTP, served by one daemon for the whole file: status codes, schemas,
 * paging, problem+json, tokens (401/403), the body limit (413), the OpenAPI document (validated
 * against the OpenAPI 3.1 schema, every route in it) and /metrics against the database. Every JSON
 * response the file receives is checked against that document's schema for its route and status.
 */
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ResolvedConfig } from '../../src/config/types.js';
import { JobdClient } from '../../src/client.js';
import { buildHttpApp, routesOf } from '../../src/http/server.js';
import { countByState } from '../../src/store/index.js';
import { startDaemon, type Daemon } from '../../src/worker/daemon.js';
import { testConfig } from '../integration/daemon-helpers.js';
import { waitUntil } from '../helpers/waitFor.js';
import { openStoreFixture, type StoreFixture } from '../integration/store-helpers.js';

const ADMIN = 'admin-token-0123456789abcdef';
const READ = 'read-token-0123456789abcdef';
const BODY_LIMIT = 8 * 1024;

let f: StoreFixture;
let d: Daemon;
let config: ResolvedConfig;
let base = '';
let client: JobdClient;

interface Res {
  status: number;
  type: string;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  text: string;
}

async function call(
  method: string,
  path: string,
  opts: { body?: unknown; raw?: string; token?: string | null } = {},
): Promise<Res> {
  const token = opts.token === undefined ? ADMIN : opts.token;
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  let payload: string | undefined;
  if (opts.raw !== undefined || opts.body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = opts.raw ?? JSON.stringify(opts.body);
  }
  const r = await fetch(base + path, {
    method,
    headers,
    ...(payload !== undefined ? { body: payload } : {}),
  });
  const text = await r.text();
  const type = r.headers.get('content-type') ?? '';
  const res = { status: r.status, type, text, body: type.includes('json') && text ? JSON.parse(text) : null };
  if (res.body !== null && path !== '/openapi.json') await expectDocumented(method, path, res);
  return res;
}

let documented: { ajv: Ajv2020; paths: [RegExp, string][] } | null = null;

/** The response's body matches the OpenAPI document's schema for its route, status and media type. */
async function expectDocumented(method: string, path: string, res: Res): Promise<void> {
  if (!documented) {
    const doc = (await (await fetch(`${base}/openapi.json`)).json()) as { paths: Record<string, unknown> };
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats.default(ajv);
    ajv.addSchema(doc, 'openapi');
    // Literal paths before templated ones (/api/v1/jobs/queue/stats before /api/v1/jobs/{job_id}).
    const paths = Object.keys(doc.paths)
      .sort((a, b) => (a.match(/{/g)?.length ?? 0) - (b.match(/{/g)?.length ?? 0))
      .map((t): [RegExp, string] => [new RegExp(`^${t.replace(/{[^}]+}/g, '[^/]+')}$`), t]);
    documented = { ajv, paths };
  }
  const url = path.split('?')[0]!;
  const template = documented.paths.find(([re]) => re.test(url))?.[1];
  expect(template, `${method} ${url} is in the OpenAPI document`).toBeDefined();
  const media = res.type.split(';')[0]!.trim();
  const ptr = (...parts: string[]) => parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');
  const ref = `openapi#/${ptr('paths', template!, method.toLowerCase(), 'responses')}`;
  const byStatus = documented.ajv.getSchema(ref)?.schema as Record<string, unknown> | undefined;
  const key = byStatus?.[String(res.status)] ? String(res.status) : `${String(res.status)[0]}XX`;
  const validate = documented.ajv.getSchema(`${ref}/${ptr(key, 'content', media, 'schema')}`);
  expect(validate, `${method} ${template} documents ${res.status} ${media}`).toBeDefined();
  expect(validate!(res.body) ? [] : validate!.errors, `${method} ${url} ${res.status}`).toEqual([]);
}

function expectProblem(r: Res, status: number, path?: string): void {
  expect(r.status, r.text).toBe(status);
  expect(r.type).toContain('application/problem+json');
  expect(r.body).toMatchObject({ status, title: expect.any(String), detail: expect.any(String) });
  if (path) expect(r.body.errors.map((e: { path: string }) => e.path)).toContain(path);
}

beforeAll(async () => {
  f = await openStoreFixture('http_api');
  config = {
    ...testConfig(f),
    http: {
      host: '127.0.0.1',
      port: 0,
      tokens: [
        { token: ADMIN, role: 'admin' },
        { token: READ, role: 'read' },
      ],
      authReads: false,
      bodyLimitBytes: BODY_LIMIT,
      rateLimit: { max: 10_000, windowMs: 60_000 },
      corsOrigins: [],
      metricsCacheMs: 0,
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

describe('http api', () => {
  it('needs an admin token to change anything: 401 without, 403 with an unknown or read token', async () => {
    const job = { type: 'noop' };
    const none = await call('POST', '/api/jobs/', { body: job, token: null });
    expectProblem(none, 401);
    const wrong = await call('POST', '/api/jobs/', { body: job, token: 'not-a-token-0123456789abc' });
    expectProblem(wrong, 403);
    const reader = await call('POST', '/api/jobs/', { body: job, token: READ });
    expectProblem(reader, 403);
    // Reads are open unless http.authReads is set.
    expect((await call('GET', '/api/tracking/stats/by-status', { token: null })).status).toBe(200);
  });

  it('enqueues, runs and reads a job; bad input is problem+json naming the field', async () => {
    const r = await call('POST', '/api/jobs/', {
      body: { type: 'echo', params: { hello: 'http' }, tags: ['t1'] },
    });
    expect(r.status, r.text).toBe(201);
    expect(r.body.created).toBe(true);
    const id = r.body.job._id as string;
    expect(r.body.job).toMatchObject({ type: 'echo', state: 'queued', tags: ['t1'] });
    expect(typeof r.body.job.createdAt).toBe('string');
    const done = await client.waitFor(id, { timeoutMs: 60_000 });
    expect(done.state).toBe('completed');
    const got = await call('GET', `/api/jobs/${id}`, { token: null });
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ _id: id, state: 'completed', result: { hello: 'http' } });

    expectProblem(
      await call('POST', '/api/jobs/', { body: { type: 'noop', priority: 0 } }),
      400,
      'body.priority',
    );
    expectProblem(await call('POST', '/api/jobs/', { body: { type: 'noop', bogus: 1 } }), 400);
    expectProblem(
      await call('POST', '/api/jobs/', { body: { type: 'sleep', params: { ms: 'soon' } } }),
      400,
      'body.params.ms',
    );
    expectProblem(await call('POST', '/api/jobs/', { raw: '{"type":' }), 400);
    expectProblem(await call('GET', '/api/jobs/no-such-job'), 404);
    expectProblem(await call('GET', '/api/jobs/?page_size=0'), 400, 'query.page_size');

    // Concurrent reads (answered by batched queries) each get their own job, or 404.
    const { job: other } = await client.enqueue('noop', {}, { runAt: new Date(Date.now() + 3_600_000) });
    const asked = Array.from({ length: 12 }, (_, i) => [id, other._id, 'no-such-job'][i % 3]!);
    const answers = await Promise.all(asked.map((a) => call('GET', `/api/jobs/${a}`, { token: null })));
    for (const [i, a] of answers.entries()) {
      if (asked[i] === 'no-such-job') expectProblem(a, 404);
      else expect([a.status, a.body._id]).toEqual([200, asked[i]]);
    }
    // A read after a write sees it.
    const edited = await call('PUT', `/api/jobs/${other._id}`, { body: { priority: 2 } });
    expect(edited.status, edited.text).toBe(200);
    expect((await call('GET', `/api/jobs/${other._id}`, { token: null })).body.priority).toBe(2);
  });

  it('refuses a body over the limit with 413', async () => {
    const r = await call('POST', '/api/jobs/', {
      body: { type: 'echo', params: { pad: 'x'.repeat(BODY_LIMIT) } },
    });
    expectProblem(r, 413);
  });

  it('pages by page/page_size and by cursor, filtered', async () => {
    const later = new Date(Date.now() + 3_600_000).toISOString();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await call('POST', '/api/jobs/', {
        body: { type: 'noop', tags: ['paging'], runAt: later, priority: 9 },
      });
      expect(r.status).toBe(201);
      ids.push(r.body.job._id);
    }
    const p1 = await call('GET', '/api/jobs/?tag=paging&page=1&page_size=2');
    expect(p1.status).toBe(200);
    expect(p1.body).toMatchObject({ page: 1, page_size: 2, total: 5 });
    expect(p1.body.items).toHaveLength(2);
    const p3 = await call('GET', '/api/jobs/?tag=paging&page=3&page_size=2');
    expect(p3.body.items).toHaveLength(1);
    expect(p3.body.next_cursor).toBeNull();
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const q: string = cursor ? `&cursor=${cursor}` : '';
      const r = await call('GET', `/api/jobs/?tag=paging&status=queued&priority=9&page_size=2${q}`);
      expect(r.status).toBe(200);
      seen.push(...r.body.items.map((j: { _id: string }) => j._id));
      cursor = r.body.next_cursor;
    } while (cursor);
    expect(seen.sort()).toEqual([...ids].sort());
    const byQueue = await call('GET', '/api/jobs/?queue=noop&tag=paging&job_type=noop');
    expect(byQueue.body.items).toHaveLength(5);
    expectProblem(await call('GET', '/api/jobs/?cursor=garbage'), 400, 'query.cursor');
  });

  it('edits, starts, cancels, retries and deletes jobs by their state', async () => {
    const later = new Date(Date.now() + 3_600_000).toISOString();
    const r = await call('POST', '/api/jobs/', { body: { type: 'noop', runAt: later } });
    const id = r.body.job._id as string;
    const edited = await call('PUT', `/api/jobs/${id}`, { body: { priority: 2, tags: ['edited'] } });
    expect(edited.status, edited.text).toBe(200);
    expect(edited.body).toMatchObject({ priority: 2, tags: ['edited'], state: 'queued' });
    expectProblem(await call('PUT', `/api/jobs/${id}`, { body: {} }), 400);
    expectProblem(await call('DELETE', `/api/jobs/${id}`), 409);
    const cancelled = await call('POST', `/api/jobs/${id}/cancel`);
    expect(cancelled.body.state).toBe('cancelled');
    expectProblem(await call('PUT', `/api/jobs/${id}`, { body: { priority: 3 } }), 409);
    expectProblem(await call('POST', `/api/jobs/${id}/start`), 409);
    // Retried, it is due now: the daemon may claim it at once.
    const retried = await call('POST', `/api/jobs/${id}/retry`);
    expect(retried.status).toBe(200);
    expect(['queued', 'running', 'completed']).toContain(retried.body.state);
    expect(await client.waitFor(id, { timeoutMs: 60_000 })).toMatchObject({ state: 'completed' });
    const other = (await call('POST', '/api/jobs/', { body: { type: 'noop', runAt: later } })).body.job._id;
    const started = await call('POST', `/api/jobs/${other}/start`);
    expect(started.status).toBe(200);
    expect(new Date(started.body.runAt).getTime()).toBeLessThan(Date.parse(later));
    expect(await client.waitFor(other, { timeoutMs: 60_000 })).toMatchObject({ state: 'completed' });
    const del = await call('DELETE', `/api/jobs/${id}`);
    expect(del.status).toBe(204);
    expectProblem(await call('GET', `/api/jobs/${id}`), 404);
    expectProblem(await call('POST', `/api/jobs/${id}/cancel`), 404);
  });

  it('enqueues a job with sub-jobs and reads it back as a tree', async () => {
    const r = await call('POST', '/api/jobs/with-subjobs', {
      body: {
        type: 'echo',
        params: { n: 0 },
        subjobs: [{ type: 'echo', params: { n: 1 } }, { type: 'noop' }],
      },
    });
    expect(r.status, r.text).toBe(201);
    expect(r.body.subjobs).toHaveLength(2);
    const id = r.body.job._id as string;
    for (const s of r.body.subjobs) expect(s.dependsOn).toEqual([id]);
    const tree = await call('GET', `/api/jobs/${id}/with-subjobs`);
    expect(tree.status).toBe(200);
    expect(tree.body.subjobs.map((j: { _id: string }) => j._id).sort()).toEqual(
      r.body.subjobs.map((j: { _id: string }) => j._id).sort(),
    );
    const jt = await call('GET', `/api/tracking/job-tree/${id}`);
    expect(jt.status).toBe(200);
    expectProblem(await call('GET', '/api/tracking/job-tree/nope'), 404);
  });

  it('serves the tracking, health and read endpoints', async () => {
    // Lists leave a workflow's keys out; its own read has them.
    const wf = await client.submitWorkflow({ name: 'listed', jobs: [{ key: 'only', type: 'noop' }] });
    for (const path of [
      '/api/tracking/stats',
      '/api/tracking/stats/by-status',
      '/api/tracking/stats/by-type',
      '/api/tracking/stats/by-priority',
      '/api/tracking/performance?hours=2',
      '/api/tracking/active-jobs',
      '/api/tracking/failed-jobs',
      '/api/tracking/queue-depth',
      '/api/tracking/throughput',
      '/api/tracking/worker-stats',
      '/api/tracking/health',
      '/api/health',
      '/api/workflows',
      '/api/schedules',
      '/api/queues',
      '/api/queues/noop',
      '/api/migration/validation',
    ]) {
      const r = await call('GET', path, { token: null });
      expect(r.status, `${path}: ${r.text}`).toBe(200);
    }
    const byStatus = await call('GET', '/api/tracking/stats/by-status');
    expect(byStatus.body).toEqual(await countByState(f.store));
    const workers = await call('GET', '/api/tracking/worker-stats');
    expect(workers.body.map((w: { _id: string }) => w._id)).toContain(d.workerId);
    expect((await call('GET', '/api/health')).body.status).toBe('ok');
    expectProblem(await call('GET', '/api/tracking/performance?hours=x'), 400, 'query.hours');
    const listed = (await call('GET', '/api/workflows')).body as Record<string, unknown>[];
    const mine = listed.find((w) => w._id === wf.workflow._id);
    expect(mine).toMatchObject({ name: 'listed', jobCount: 1 });
    expect(mine).not.toHaveProperty('keys');
    const one = await call('GET', `/api/workflows/${wf.workflow._id}`);
    expect(one.body.workflow.keys).toEqual({ only: wf.workflow.keys.only });
    expectProblem(await call('GET', '/api/workflows/none'), 404);
    expectProblem(await call('GET', '/api/schedules/none'), 404);
    expectProblem(await call('GET', '/api/queues/none'), 404);
    expectProblem(await call('GET', '/api/datasets/none'), 404);
    // The dashboard's reads: a job's transitions, the finished-jobs timeline, a session (of an import only).
    const ran = (await call('POST', '/api/jobs/', { body: { type: 'echo', params: { t: 1 } } })).body.job._id;
    expect((await client.waitFor(ran, { timeoutMs: 60_000 })).state).toBe('completed');
    const events = await call('GET', `/api/jobs/${ran}/events`);
    expect(events.status).toBe(200);
    expect(events.body.at(-1)).toMatchObject({ to: 'completed' });
    expectProblem(await call('GET', '/api/jobs/none/events'), 404);
    const timeline = await call('GET', '/api/tracking/timeline?hours=1&buckets=4');
    expect(timeline.status).toBe(200);
    expect(timeline.body.buckets).toHaveLength(4);
    expect(
      timeline.body.buckets.reduce((n: number, b: { completed: number }) => n + b.completed, 0),
    ).toBeGreaterThan(0);
    expectProblem(await call('GET', '/api/tracking/timeline?buckets=0'), 400, 'query.buckets');
    expectProblem(await call('GET', `/api/sessions/${ran}`), 404);
  });

  it('keeps the legacy v1 paths and field names', async () => {
    const r = await call('POST', '/api/v1/jobs', {
      body: { dataset_uuid: 'ds-1', job_type: 'echo', parameters: { a: 1 }, priority: 1 },
    });
    expect(r.status, r.text).toBe(201);
    expect(r.body).toMatchObject({
      dataset_uuid: 'ds-1',
      job_type: 'echo',
      parameters: { a: 1 },
      priority: 1,
    });
    const jobd = await call('GET', `/api/jobs/${r.body.job_id}`);
    expect(jobd.body).toMatchObject({ priority: 3, datasetUuid: 'ds-1' });
    const got = await call('GET', `/api/v1/jobs/${r.body.job_id}`);
    expect(got.status).toBe(200);
    expect(got.body.job_id).toBe(r.body.job_id);
    const stats = await call('GET', '/api/v1/jobs/queue/stats');
    expect(stats.status).toBe(200);
    expect(stats.body.total_jobs).toBe(Object.values(await countByState(f.store)).reduce((a, b) => a + b, 0));
    expectProblem(
      await call('POST', '/api/v1/jobs', { body: { job_type: 'echo' } }),
      400,
      'body.dataset_uuid',
    );
  });

  it('publishes an OpenAPI 3.1 document that validates and lists every route', async () => {
    const r = await call('GET', '/openapi.json', { token: null });
    expect(r.status).toBe(200);
    const validator = new Validator();
    const res = await validator.validate(r.body);
    expect(res.errors ?? []).toEqual([]);
    expect(res.valid).toBe(true);
    expect(validator.version).toBe('3.1');
    const app = await buildHttpApp({ config, store: f.store, logger: pino({ level: 'silent' }) });
    await app.ready();
    const api = routesOf(app).filter((x) => !x.hidden && !x.url.startsWith('/docs'));
    expect(api.length).toBeGreaterThan(30);
    for (const route of api) {
      const path = route.url.replace(/:([A-Za-z_]+)/g, '{$1}');
      expect(r.body.paths[path]?.[route.method.toLowerCase()], `${route.method} ${path}`).toBeDefined();
    }
    await app.close();
    const docs = await fetch(`${base}/docs`);
    expect(docs.status).toBe(200);
    expect(await docs.text()).toContain('swagger');
  });

  it('/metrics is Prometheus text whose counts agree with the database', async () => {
    const ids = [];
    for (let i = 0; i < 4; i++) {
      ids.push(
        (
          await call('POST', '/api/jobs/', {
            body: { type: 'fail', params: { message: 'boom' }, maxAttempts: 1 },
          })
        ).body.job._id,
      );
    }
    for (const id of ids) expect((await client.waitFor(id, { timeoutMs: 60_000 })).state).toBe('failed');
    // A job is failed in the database a moment before the daemon's counters hear of it (they count the
    // settlement once its write is acknowledged): read until the counters have caught up.
    const samples = await waitUntil(
      async () => {
        const r = await fetch(`${base}/metrics`);
        expect(r.status).toBe(200);
        expect(r.headers.get('content-type')).toContain('text/plain');
        const all = parsePrometheus(await r.text());
        const seen = all.find((s) => s.name === 'jobd_job_failures_total' && s.labels.type === 'fail');
        return (seen?.value ?? 0) >= 4 ? all : undefined;
      },
      { what: 'the failure counter reaching 4', timeoutMs: 30_000, intervalMs: 100 },
    );
    const counts = await countByState(f.store);
    for (const [state, n] of Object.entries(counts)) {
      const sum = samples
        .filter((s) => s.name === 'jobd_jobs' && s.labels.state === state)
        .reduce((a, s) => a + s.value, 0);
      expect(sum, state).toBe(n);
    }
    for (const s of samples) expect(s.labels.daemon).toBe(d.workerId);
    const failed = samples.find((s) => s.name === 'jobd_job_failures_total' && s.labels.type === 'fail');
    expect(failed?.value).toBe(4);
    // The daemon's own counters agree with the database for the jobs it ran (none of type fail was deleted).
    const failedInDb = (await countByState(f.store, { type: 'fail' })).failed;
    const outcome = samples.find(
      (s) =>
        s.name === 'jobd_job_outcomes_total' && s.labels.type === 'fail' && s.labels.outcome === 'failed',
    );
    expect(outcome?.value).toBe(failedInDb);
    const durations = samples.find(
      (s) =>
        s.name === 'jobd_job_duration_seconds_count' &&
        s.labels.type === 'fail' &&
        s.labels.outcome === 'failed',
    );
    expect(durations?.value).toBe(failedInDb);
    expect(samples.find((s) => s.name === 'jobd_workers_alive')?.value).toBe(1);
    expect(samples.some((s) => s.name.startsWith('jobd_process_'))).toBe(true);
  });
});

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The Prometheus text format (version 0.0.4), strictly: every line is a comment or a sample. */
function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  const typed = new Set<string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta) {
      if (meta[1] === 'TYPE') {
        expect(['counter', 'gauge', 'histogram', 'summary', 'untyped']).toContain(meta[3]);
        typed.add(meta[2]!);
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.e+-]+|NaN|\+Inf|-Inf)(?: -?\d+)?$/.exec(line);
    expect(m, `not a Prometheus line: ${line}`).not.toBeNull();
    const labels: Record<string, string> = {};
    for (const l of (m![2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]!] = l[2]!;
    const name = m![1]!;
    const family = name.replace(/_(bucket|sum|count)$/, '');
    expect(typed.has(name) || typed.has(family), `sample without TYPE: ${name}`).toBe(true);
    out.push({ name, labels, value: Number(m![3]) });
  }
  return out;
}
