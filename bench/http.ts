/**
 * HTTP API benchmark: prints ONE JSON document on stdout (progress on stderr).
 *
 *   npm run bench:http
 *   BENCH_HTTP_SECONDS=5 BENCH_HTTP_CONNECTIONS=32 npm run bench:http
 *   MONGODB_URI=mongodb://... npm run bench:http     against a real MongoDB
 *   BENCH_HTTP_PARTS=get,libget npm run bench:http   only these parts (get, libget, post, libpost, events)
 *   BENCH_HTTP_WORKERS=0 npm run bench:http          autocannon in the server's own thread (default 1)
 *   BENCH_HTTP_WARMUP=0 npm run bench:http           no unmeasured warm-up round before each autocannon
 *                                                    round (default 2 seconds)
 *   BENCH_BUILD=../other npm run bench:http          the HTTP server, store and client of another checkout's
 *                                                    build (its dist/), for an A/B in one sitting
 *   BENCH_HTTP_PROFILE=get.cpuprofile npm run bench:http   a CPU profile of the server thread during the
 *                                                    GET part (summarise with bench/profileTop.ts)
 *
 * Requests/s of GET /api/jobs/{id} (round BENCH_HTTP_GET_JOBS jobs, default 1,000) and POST /api/jobs/ (autocannon, keep-alive connections) beside the
 * library call rate of the same operations (JobdClient.get / enqueue with as many calls in flight), in
 * the same run against the same database (the embedded server in its own process unless MONGODB_URI).
 * The API is served without a daemon, so the jobs it creates stay queued. autocannon runs in its own
 * worker thread (BENCH_HTTP_WORKERS), as a client does in its own process: in the server's thread, its
 * request building and response parsing took about a third of that thread's time, and the figure was
 * the server's and the load generator's cost together.
 *
 * Event-stream latency: one client on GET /api/events; BENCH_HTTP_EVENTS jobs (default 300) are enqueued
 * one at a time, each after the previous one's event arrived, and the time from the start of the insert
 * (the transition) to its `transition` event reaching the client is taken (p50, p99).
 */
import autocannon from 'autocannon';
import { readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { availableParallelism, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pino from 'pino';
import type * as ClientApi from '../src/client.js';
import type * as ConfigLoad from '../src/config/load.js';
import type * as HttpApi from '../src/http/server.js';
import type * as StoreApi from '../src/store/index.js';
import { ROOT, startEmbeddedProcess } from './lib/jobd.js';

/**
 * BENCH_BUILD: the checkout whose compiled HTTP server, store and client are measured (default this
 * one's source, through tsx). The database is this checkout's embedded server either way.
 */
const BUILD = process.env.BENCH_BUILD;
async function load<T>(src: string, dist: string): Promise<T> {
  const file = BUILD ? pathToFileURL(join(resolve(ROOT, BUILD), 'dist', dist)).href : src;
  return (await import(file)) as T;
}
const [{ JobdClient }, { loadConfig }, { startHttpServer }, { openStore, ensureIndexes }] = await Promise.all(
  [
    load<typeof ClientApi>('../src/client.js', 'client.js'),
    load<typeof ConfigLoad>('../src/config/load.js', 'config/load.js'),
    load<typeof HttpApi>('../src/http/server.js', 'http/server.js'),
    load<typeof StoreApi>('../src/store/index.js', 'store/index.js'),
  ],
);

const SECONDS = Number(process.env.BENCH_HTTP_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_HTTP_CONNECTIONS ?? 32);
const TOKEN = 'bench-admin-token-0123456789';
const WORKERS = Number(process.env.BENCH_HTTP_WORKERS ?? 1);
const PARTS = new Set((process.env.BENCH_HTTP_PARTS ?? 'get,libget,post,libpost,events').split(','));
/** Runs `fn` if its part was asked for; a part left out is null in the output. */
const part = async <T>(name: string, fn: () => Promise<T>): Promise<T | null> =>
  PARTS.has(name) ? fn() : null;

const GET_REQUEST = fileURLToPath(new URL('./lib/httpGetRequest.cjs', import.meta.url));

const log = (msg: string): void => void process.stderr.write(`[bench:http] ${msg}\n`);

/** A CPU profile of this (the server's) thread while `fn` runs, written to BENCH_HTTP_PROFILE. */
async function profiled<T>(fn: () => Promise<T>): Promise<T> {
  const file = process.env.BENCH_HTTP_PROFILE;
  if (!file) return fn();
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object) =>
    new Promise<unknown>((res, rej) => session.post(method, params, (e, r) => (e ? rej(e) : res(r))));
  await post('Profiler.enable');
  await post('Profiler.start');
  try {
    return await fn();
  } finally {
    const { profile } = (await post('Profiler.stop')) as { profile: unknown };
    writeFileSync(file, JSON.stringify(profile));
    session.disconnect();
  }
}

/** Calls per second of `op` with `inFlight` calls at a time for `seconds`. */
async function libraryRate(op: () => Promise<unknown>, inFlight: number, seconds: number): Promise<number> {
  const end = Date.now() + seconds * 1000;
  let n = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (Date.now() < end) {
        await op();
        n++;
      }
    }),
  );
  return Math.round(n / ((performance.now() - t0) / 1000));
}

/**
 * CPU time (ms) of the server's main thread, of this whole process (the server thread, autocannon's
 * worker thread, and V8's and libuv's helper threads), and of the database process (when it is ours),
 * Linux only.
 */
let dbPid: number | null = null;
function cpuMs(): { server: number; process: number; database: number | null } | null {
  const stat = (path: string): number => {
    // utime and stime are fields 14 and 15; fields start after the command name's last ')'.
    const text = readFileSync(path, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
  };
  try {
    return {
      server: stat(`/proc/self/task/${process.pid}/stat`),
      process: stat('/proc/self/stat'),
      database: dbPid === null ? null : stat(`/proc/${dbPid}/stat`),
    };
  } catch {
    return null;
  }
}
/** Busy and total jiffies of all CPUs of the machine (/proc/stat), Linux only. */
function machineJiffies(): { busy: number; total: number } | null {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = f.reduce((a, b) => a + b, 0);
    // idle and iowait are fields 4 and 5 of the cpu line.
    return { busy: total - f[3]! - f[4]!, total };
  } catch {
    return null;
  }
}
/** USER_HZ: 100 on Linux (the kernel's ABI for /proc's tick fields). */
const CLK_TCK = 100;

async function cannon(opts: autocannon.Options): Promise<{
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  non2xx: number;
  /**
   * CPU per request, a figure load does not cut: the server's main thread; the other threads of this
   * process (autocannon's worker thread, the load generator, with V8's GC and compiler threads of both);
   * and the database process.
   */
  cpuUsPerRequest: { server: number; otherThreads: number; database: number | null } | null;
  /** Share of the machine's CPUs busy during the run, everything on it included (other programs too). */
  machineBusyPct: number | null;
}> {
  const m0 = machineJiffies();
  const c0 = cpuMs();
  const r = await autocannon({
    ...opts,
    connections: CONNECTIONS,
    duration: SECONDS,
    ...(WORKERS > 0 ? { workers: WORKERS } : {}),
  });
  const c1 = cpuMs();
  const m1 = machineJiffies();
  const per = (a: number, b: number): number => Math.round(((b - a) * 1000) / Math.max(1, r.requests.total));
  return {
    rps: Math.round(r.requests.average),
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    errors: r.errors,
    non2xx: r.non2xx,
    cpuUsPerRequest:
      c0 && c1
        ? {
            server: per(c0.server, c1.server),
            otherThreads: per(c0.process - c0.server, c1.process - c1.server),
            database: c0.database === null || c1.database === null ? null : per(c0.database, c1.database),
          }
        : null,
    machineBusyPct:
      m0 && m1 ? Math.round(((m1.busy - m0.busy) * 100) / Math.max(1, m1.total - m0.total)) : null,
  };
}

/**
 * Seconds of the same load, unmeasured, before each autocannon round: the figure is the server's steady
 * state, as a daemon serves it, not V8 compiling the request path meanwhile (in an 8-second round on 2
 * busy cores the optimizing compiler's threads took a third of the bench process's CPU, and the
 * server thread still ran much of its code unoptimized). 0 turns it off.
 */
const WARMUP_SECONDS = Number(process.env.BENCH_HTTP_WARMUP ?? 2);

async function warmUp(opts: autocannon.Options): Promise<void> {
  if (WARMUP_SECONDS <= 0) return;
  log(`  warm-up x${WARMUP_SECONDS}s`);
  await autocannon({
    ...opts,
    connections: CONNECTIONS,
    duration: WARMUP_SECONDS,
    ...(WORKERS > 0 ? { workers: WORKERS } : {}),
  });
}

/** Jobs the GETs go round. */
const GET_JOBS = Number(process.env.BENCH_HTTP_GET_JOBS ?? 1000);
const EVENTS = Number(process.env.BENCH_HTTP_EVENTS ?? 300);

/** Transition → client latency of /api/events, from the start of each insert to its event's arrival. */
async function eventLatency(
  url: string,
  enqueue: () => Promise<{ job: { _id: string } }>,
  count: number,
): Promise<{ p50Ms: number; p99Ms: number; enqueueReplyP50Ms: number; events: number }> {
  const ctl = new AbortController();
  const r = await fetch(`${url}/api/events?status=queued`, { signal: ctl.signal });
  if (r.status !== 200) throw new Error(`GET /api/events answered ${r.status}`);
  const arrived = new Map<string, number>();
  const waker: { wake: (() => void) | null } = { wake: null };
  const reader = (async () => {
    const dec = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
        const at = performance.now();
        buf += dec.decode(chunk, { stream: true });
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const data = /^data: (.*)$/m.exec(buf.slice(0, i))?.[1];
          buf = buf.slice(i + 2);
          if (data) arrived.set((JSON.parse(data) as { jobId: string }).jobId, at);
        }
        waker.wake?.();
      }
    } catch {
      // aborted at the end
    }
  })();
  const lat: number[] = [];
  const acks: number[] = [];
  for (let n = 0; n < count; n++) {
    const t0 = performance.now();
    const { job } = await enqueue();
    acks.push(performance.now() - t0);
    // The event may arrive before the insert's reply does.
    while (!arrived.has(job._id)) await new Promise<void>((resolve) => (waker.wake = resolve));
    lat.push(arrived.get(job._id)! - t0);
  }
  ctl.abort();
  await reader;
  const pct = (xs: number[], p: number) => {
    const sorted = [...xs].sort((a, b) => a - b);
    return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]! * 100) / 100;
  };
  // enqueueReplyP50Ms: the same inserts' round trip to their reply, for scale (the event races it).
  return {
    p50Ms: pct(lat, 0.5),
    p99Ms: pct(lat, 0.99),
    enqueueReplyP50Ms: pct(acks, 0.5),
    events: lat.length,
  };
}

async function main(): Promise<void> {
  let uri = process.env.MONGODB_URI;
  let close = async (): Promise<void> => {};
  if (!uri) {
    const server = await startEmbeddedProcess();
    uri = server.uri;
    close = server.close;
    dbPid = server.pid;
  }
  const database = `jobd_bench_http_${process.pid}`;
  const config = loadConfig({
    env: {},
    overrides: {
      mongoUri: uri,
      database,
      http: { port: 0, tokens: [TOKEN], rateLimit: false },
      logLevel: 'warn',
    },
  });
  const store = await openStore({ mongoUri: uri, database, appName: 'jobd bench:http' });
  await ensureIndexes(store);
  const client = JobdClient.over(store, { mongoUri: uri, database, jobTypes: config.jobTypes });
  // Logs go to stderr: stdout is the JSON document.
  const api = await startHttpServer({ config, store, logger: pino({ level: 'warn' }, pino.destination(2)) });
  try {
    // GETs go round these jobs, as reads of a real installation spread over many.
    const ids = (
      await client.enqueueMany(
        Array.from({ length: GET_JOBS }, (_, n) => ({
          type: 'echo',
          params: { hello: 'bench', n },
          options: { runAt: new Date(Date.now() + 86_400_000) },
        })),
      )
    ).map((r) => r.job._id);
    process.env.BENCH_HTTP_GET_IDS = ids.join(',');
    let next = 0;
    const nextId = (): string => ids[next++ % ids.length]!;
    log(`library get x${SECONDS}s`);
    const libGet = await part('libget', () => libraryRate(() => client.get(nextId()), CONNECTIONS, SECONDS));
    log(`http GET x${SECONDS}s`);
    const getOpts: autocannon.Options = {
      url: api.url,
      requests: [
        {
          method: 'GET',
          // In worker threads autocannon takes the function as a file; it goes round the same ids.
          setupRequest:
            WORKERS > 0
              ? (GET_REQUEST as unknown as autocannon.Request['setupRequest'])
              : (req) => ({ ...req, path: `/api/jobs/${nextId()}` }),
        },
      ],
    };
    const httpGet = await part('get', async () => {
      await warmUp(getOpts);
      return profiled(() => cannon(getOpts));
    });
    const later = new Date(Date.now() + 86_400_000);
    log(`library enqueue x${SECONDS}s`);
    const libPost = await part('libpost', () =>
      libraryRate(() => client.enqueue('echo', { n: 1 }, { runAt: later }), CONNECTIONS, SECONDS),
    );
    log(`http POST x${SECONDS}s`);
    const postOpts: autocannon.Options = {
      url: `${api.url}/api/jobs/`,
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'echo', params: { n: 1 }, runAt: later.toISOString() }),
    };
    const httpPost = await part('post', async () => {
      await warmUp(postOpts);
      return cannon(postOpts);
    });
    log(`event stream latency x${EVENTS} transitions`);
    const events = await part('events', () =>
      eventLatency(api.url, () => client.enqueue('echo', { e: 1 }, { runAt: later }), EVENTS),
    );
    process.stdout.write(
      `${JSON.stringify(
        {
          cpus: availableParallelism(),
          loadavg: loadavg().map((l) => Math.round(l * 100) / 100),
          backend: process.env.MONGODB_URI ? 'mongodb (MONGODB_URI)' : 'embedded (own process, in memory)',
          seconds: SECONDS,
          warmupSeconds: WARMUP_SECONDS,
          connections: CONNECTIONS,
          autocannonWorkers: WORKERS,
          build: BUILD ? resolve(ROOT, BUILD) : 'this checkout (src/)',
          getJob: { http: httpGet, libraryPerSec: libGet, targetRps: 5000 },
          postJob: { http: httpPost, libraryPerSec: libPost },
          eventStream: events && { ...events, targetP50Ms: 20 },
        },
        null,
        2,
      )}\n`,
    );
  } finally {
    await api.close();
    await store.db.dropDatabase().catch(() => {});
    await store.close();
    await close();
  }
}

await main();
