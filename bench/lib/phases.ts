/** The benchmark's phases. Each uses its own database and returns plain figures. */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import pino from 'pino';
import type { ResolvedConfig } from '../../src/config/types.js';
import type { Store } from '../../src/store/index.js';
import type { Daemon } from '../../src/worker/daemon.js';
import type { JobDoc } from '../../src/types.js';
import { ROOT, type Jobd } from './jobd.js';
import { cpuDelta, cpuSnapshot } from './procCpu.js';
import { log, round, sleep, summary } from './stats.js';

export interface Ctx {
  jobd: Jobd;
  uri: string;
  newDb(label: string): string;
  /** Stop a phase that runs longer than this (figures then cover what finished). */
  phaseMaxMs: number;
  /**
   * The embedded server's pid when it runs as this process's child (BENCH_DB=process): its CPU is then
   * reported on its own (cpuMsPerJob.server), not inside the jobs' children.
   */
  serverPid?: number;
}

const silent = pino({ level: 'silent' });
/** A handler that imports nothing (bench/fixtures/plainNoop.js): isolated mode's own cost. */
export const PLAIN_NOOP = join(ROOT, 'bench/fixtures/plainNoop.js');
const JOB_DEFAULTS = { priority: 5, maxAttempts: 3, timeoutMs: 60_000 };

/** worker.prestartIsolated for the daemons the benchmark starts, when set (else the build's default). */
export const PRESTART = process.env.JOBD_WORKER__PRESTART_ISOLATED;
/** worker.spawnHelper for the daemons the benchmark starts, when set (else the build's default). */
export const SPAWN_HELPER = process.env.JOBD_WORKER__SPAWN_HELPER;

export function configFor(
  ctx: Ctx,
  database: string,
  o: { concurrency: number; claimBatchSize?: number; changeStreams?: boolean },
): ResolvedConfig {
  const dir = mkdtempSync(join(tmpdir(), 'jobd-bench-'));
  const base = ctx.jobd.loadConfig({
    env: {
      JOBD_MONGO_URI: ctx.uri,
      JOBD_DATABASE: database,
      JOBD_DATA_DIR: dir,
      JOBD_LOG_LEVEL: 'silent',
      // Isolated jobs with and without children started ahead (a build without the setting refuses it).
      ...(PRESTART !== undefined ? { JOBD_WORKER__PRESTART_ISOLATED: PRESTART } : {}),
      // Isolated children started by the spawn helper or by the daemon (likewise).
      ...(SPAWN_HELPER !== undefined ? { JOBD_WORKER__SPAWN_HELPER: SPAWN_HELPER } : {}),
    },
    cwd: dir,
  });
  const noop = base.jobTypes.noop!;
  return {
    ...base,
    worker: {
      ...base.worker,
      concurrency: o.concurrency,
      claimBatchSize: o.claimBatchSize ?? base.worker.claimBatchSize,
      changeStreams: o.changeStreams ?? true,
    },
    jobTypes: {
      ...base.jobTypes,
      'noop-isolated': { ...noop, name: 'noop-isolated', mode: 'isolated' },
      'plain-isolated': { ...noop, name: 'plain-isolated', mode: 'isolated', handler: PLAIN_NOOP },
    },
  };
}

export async function openProducer(ctx: Ctx, database: string): Promise<Store> {
  return ctx.jobd.store.openStore({ mongoUri: ctx.uri, database, appName: 'jobd-bench producer' });
}

export async function enqueueNoops(
  ctx: Ctx,
  store: Store,
  type: string,
  n: number,
  chunk = 1_000,
): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i += chunk) {
    const now = new Date();
    const batch = Array.from({ length: Math.min(chunk, n - i) }, () =>
      ctx.jobd.store.resolveNewJob(type, null, {}, JOB_DEFAULTS, now),
    );
    for (const r of await ctx.jobd.store.enqueueMany(store, batch, now)) ids.push(r.job._id);
  }
  return ids;
}

/** Resolves when `n` jobs completed (counted from now), or after maxMs; returns how many did. */
export function completions(d: Daemon, n: number, maxMs: number): Promise<{ done: number; at: number }> {
  return new Promise((resolve) => {
    let done = 0;
    const finish = (): void => {
      off();
      clearTimeout(timer);
      resolve({ done, at: performance.now() });
    };
    const off = d.on('job:completed', () => {
      if (++done === n) finish();
    });
    const timer = setTimeout(finish, maxMs);
  });
}

export interface ThroughputFigures {
  concurrency: number;
  claimBatchSize: number;
  jobs: number;
  completed: number;
  capped: boolean;
  seconds: number;
  jobsPerSec: number;
  enqueueSeconds: number;
  /** Commands the daemon's driver sent while these jobs ran, per completed job. */
  commandsPerJob: number;
  commands: Record<string, number>;
  /**
   * CPU milliseconds per completed job (Linux /proc): this process (daemon, and the in-process
   * embedded server unless BENCH_DB/MONGODB_URI put it elsewhere) and its child processes; with the
   * server in a child process (ctx.serverPid), `server` is that process and `children` the rest.
   * `selfMain` is the part of `self` spent on this process's main (JavaScript) thread; the rest is
   * V8's background threads (optimising compiles of code still warming up, GC helpers) and libuv's.
   */
  cpuMsPerJob: { self: number; selfMain: number; children: number; server?: number } | null;
}

/** Enqueue `jobs` no-op jobs into an idle, warmed-up daemon and time until all completed. */
export async function throughput(
  ctx: Ctx,
  o: { type: string; jobs: number; concurrency: number; claimBatchSize?: number },
): Promise<ThroughputFigures> {
  const db = ctx.newDb(`tp_${o.type}_${o.concurrency}`);
  const config = configFor(ctx, db, {
    concurrency: o.concurrency,
    ...(o.claimBatchSize ? { claimBatchSize: o.claimBatchSize } : {}),
  });
  const producer = await openProducer(ctx, db);
  const d = await ctx.jobd.startDaemon({ config, logger: silent, monitorCommands: true });
  try {
    // Warm-up: children started, code paths compiled.
    const warm = completions(d, o.concurrency * 2, ctx.phaseMaxMs);
    await enqueueNoops(ctx, producer, o.type, o.concurrency * 2);
    await warm;

    const commands: Record<string, number> = {};
    d.store.client.on('commandStarted', (e) => {
      commands[e.commandName] = (commands[e.commandName] ?? 0) + 1;
    });
    const server = { server: ctx.serverPid };
    const cpu0 = cpuSnapshot(server, process.pid);
    const t0 = performance.now();
    const done = completions(d, o.jobs, ctx.phaseMaxMs);
    await enqueueNoops(ctx, producer, o.type, o.jobs);
    const enqueued = performance.now();
    const r = await done;
    const seconds = (r.at - t0) / 1000;
    const delta = cpuDelta(cpu0, cpuSnapshot(server, process.pid));
    const cpu = delta.split;
    const serverCpu = delta.trees.server;
    const perJob = (seconds: number): number => round((seconds * 1000) / Math.max(1, r.done), 2);
    const total = Object.values(commands).reduce((a, b) => a + b, 0);
    return {
      concurrency: o.concurrency,
      claimBatchSize: config.worker.claimBatchSize,
      jobs: o.jobs,
      completed: r.done,
      capped: r.done < o.jobs,
      seconds: round(seconds),
      jobsPerSec: round(r.done / seconds, 1),
      enqueueSeconds: round((enqueued - t0) / 1000),
      commandsPerJob: round(total / Math.max(1, r.done), 3),
      commands,
      cpuMsPerJob: cpu
        ? {
            self: perJob(cpu.self),
            selfMain: perJob(cpu.selfMain),
            children: perJob(cpu.children - (serverCpu ?? 0)),
            ...(serverCpu !== undefined ? { server: perJob(serverCpu) } : {}),
          }
        : null,
    };
  } finally {
    await d.stop({ graceMs: 0 });
    await producer.db.dropDatabase().catch(() => {});
    await producer.close();
  }
}

export interface LatencyFigures {
  changeStreamsConfigured: boolean;
  changeStreamsUsed: boolean;
  fallbackReason: string | null;
  samples: number;
  /** performance.now() at the 'job:claimed' event minus just before the insert was sent (ms, hi-res). */
  eventMs: ReturnType<typeof summary>;
  /** job.startedAt - job.createdAt from the claimed job document (ms resolution). */
  docMs: ReturnType<typeof summary>;
}

/** Enqueue-to-start latency on an idle daemon: one job at a time, each after the previous finished. */
export async function latency(
  ctx: Ctx,
  o: { samples: number; changeStreams: boolean },
): Promise<LatencyFigures> {
  const db = ctx.newDb(`lat_${o.changeStreams ? 'cs' : 'poll'}`);
  const config = configFor(ctx, db, { concurrency: 4, changeStreams: o.changeStreams });
  const producer = await openProducer(ctx, db);
  let fallbackReason: string | null = null;
  const d = await ctx.jobd.startDaemon({ config, logger: silent });
  d.on('watch:fallback', (e) => (fallbackReason = e.reason));
  const watchErrors: string[] = [];
  d.on('db:error', (e) => {
    if (e.op === 'watch') watchErrors.push(String((e.error as Error)?.message ?? e.error));
  });
  const eventMs: number[] = [];
  const docMs: number[] = [];
  try {
    // Let the daemon settle into idle (its first empty claim rounds, the change stream opening).
    await sleep(500);
    for (let i = 0; i < o.samples + 5; i++) {
      const claimed = new Promise<{ at: number; job: JobDoc }>((resolve) => {
        const off = d.on('job:claimed', (e) => {
          off();
          resolve({ at: performance.now(), job: e.job });
        });
      });
      const t0 = performance.now();
      const now = new Date();
      const { job } = await ctx.jobd.store.enqueue(
        producer,
        ctx.jobd.store.resolveNewJob('noop', null, {}, JOB_DEFAULTS, now),
        now,
      );
      const c = await claimed;
      if (c.job._id !== job._id) throw new Error('latency: another job was claimed');
      const completed = d.events.waitFor('job:completed', (e) => e.jobId === job._id);
      await completed;
      if (i >= 5) {
        eventMs.push(c.at - t0);
        docMs.push(new Date(c.job.startedAt!).getTime() - new Date(job.createdAt).getTime());
      }
      // Idle again: a pause of a few poll periods between jobs, so each job meets a sleeping daemon.
      await sleep(50);
    }
  } finally {
    await d.stop({ graceMs: 0 });
    await producer.db.dropDatabase().catch(() => {});
    await producer.close();
  }
  return {
    changeStreamsConfigured: o.changeStreams,
    changeStreamsUsed: o.changeStreams && fallbackReason === null && watchErrors.length === 0,
    fallbackReason: fallbackReason ?? watchErrors[0] ?? null,
    samples: eventMs.length,
    eventMs: summary(eventMs),
    docMs: summary(docMs),
  };
}

export interface ClaimFigures {
  queued: number;
  claimNextMs: ReturnType<typeof summary>;
  claimBatch50Ms: ReturnType<typeof summary>;
}

async function timeClaims(
  ctx: Ctx,
  store: Store,
  n: number,
  batch: boolean,
): Promise<{ ms: number[]; claimed: number }> {
  const ms: number[] = [];
  let claimed = 0;
  for (let i = 0; i < n; i++) {
    const now = new Date();
    const t0 = performance.now();
    if (batch)
      claimed += (
        await ctx.jobd.store.claimBatch(store, {
          owner: 'bench',
          leaseMs: 600_000,
          now,
          limit: 50,
          types: ['noop'],
        })
      ).length;
    else
      claimed += (await ctx.jobd.store.claimNext(store, {
        owner: 'bench',
        leaseMs: 600_000,
        now,
        types: ['noop'],
      }))
        ? 1
        : 0;
    ms.push(performance.now() - t0);
  }
  // Put the claimed jobs back, so every measurement sees the same queue size.
  await store.jobs.updateMany(
    { state: 'running' },
    { $set: { state: 'queued', lease: null }, $inc: { attempts: -1 } },
  );
  return { ms, claimed };
}

/**
 * claimNext and claimBatch(50) timings with `small` and then `large` jobs queued. Every timed call
 * claims (the queue never runs dry: at most half of `small` is taken before it is put back).
 */
export async function claimScaling(
  ctx: Ctx,
  o: { small: number; large: number; samples: number },
): Promise<ClaimFigures[]> {
  const db = ctx.newDb('claim');
  const store = await openProducer(ctx, db);
  const out: ClaimFigures[] = [];
  const nextSamples = Math.min(o.samples, Math.floor(o.small / 2));
  const batchSamples = Math.max(2, Math.min(Math.floor(o.samples / 10), Math.floor(o.small / 2 / 50)));
  try {
    let queued = 0;
    for (const target of [o.small, o.large]) {
      log(`claim: enqueueing ${target - queued} jobs (to ${target} queued)`);
      await enqueueNoops(ctx, store, 'noop', target - queued);
      queued = target;
      await timeClaims(ctx, store, 10, false); // warm-up
      const one = await timeClaims(ctx, store, nextSamples, false);
      const many = await timeClaims(ctx, store, batchSamples, true);
      if (one.claimed !== nextSamples || many.claimed !== batchSamples * 50) {
        throw new Error(
          `claim: expected every call to claim (got ${one.claimed}/${nextSamples}, ${many.claimed}/${batchSamples * 50})`,
        );
      }
      out.push({ queued: target, claimNextMs: summary(one.ms), claimBatch50Ms: summary(many.ms) });
    }
  } finally {
    await store.db.dropDatabase().catch(() => {});
    await store.close();
  }
  return out;
}

export interface RssFigures {
  jobs: number;
  completed: number;
  seconds: number;
  rssBeforeMB: number;
  rssAfterMB: number;
  rssPeakMB: number;
  /** RSS when a quarter of the jobs had completed (V8 has sized its heap by then): growth after it is what a leak shows. */
  rssQuarterMB: number;
  rssAfterIdleMB: number;
  openFdsBefore: number;
  openFdsAfter: number;
  growthPct: number;
  lastThreeQuartersGrowthPct: number;
  /**
   * CPU of the daemon over the measured jobs, per job: its own process (all its threads, V8's GC
   * helpers among them) and its children (pooled and isolated), in ms.
   */
  cpuMsPerJob: { daemon: number; daemonMainThread: number; children: number };
  /** JOBD_WORKER__HEAP_GROWTH_PERCENT as given to the daemon; null: the build's default. */
  heapGrowthPercent: string | null;
  /** RSS over the run: seconds since the start, jobs completed since the warm-up, RSS. */
  samples: RssSample[];
}

export interface RssSample {
  s: number;
  completed: number;
  rssMB: number;
}

function openFds(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

function rssMB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? round(Number(m[1]) / 1024, 1) : NaN;
}

/** A real `bin/jobd` process: RSS after a warm-up, then after `jobs` more no-op jobs. */
export async function rssRun(
  ctx: Ctx,
  o: { jobs: number; warmup: number; concurrency: number },
): Promise<RssFigures> {
  const db = ctx.newDb('rss');
  const dir = mkdtempSync(join(tmpdir(), 'jobd-bench-rss-'));
  const settingsFile = join(dir, 'settings.json');
  writeFileSync(
    settingsFile,
    JSON.stringify({
      mongoUri: ctx.uri,
      database: db,
      dataDir: dir,
      logLevel: 'warn',
      worker: { concurrency: o.concurrency },
    }),
  );
  const child = spawn(process.execPath, [join(ROOT, 'bin/jobd'), '--settings', settingsFile], {
    stdio: ['ignore', 'ignore', 'inherit'],
    cwd: dir,
  });
  const pid = child.pid!;
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const store = await openProducer(ctx, db);
  try {
    const deadline = Date.now() + 30_000;
    while (!(await store.workers.findOne({ pid }))) {
      if (Date.now() > deadline) throw new Error('rss: jobd did not register within 30 s');
      await sleep(100);
    }
    // Completed jobs are deleted as the run goes (counted first), and jobs are enqueued in waves a
    // little ahead of the daemon: the database stays small however long the run, so a soak of
    // hundreds of thousands of jobs measures the daemon, not a server (in this process) that grows.
    let deleted = 0;
    const completedSoFar = async (): Promise<number> => {
      const n = await store.jobs.countDocuments({ state: 'completed' });
      if (n < 20_000) return deleted + n;
      deleted += (await store.jobs.deleteMany({ state: 'completed' })).deletedCount;
      return deleted + (await store.jobs.countDocuments({ state: 'completed' }));
    };
    let enqueued = 0;
    const AHEAD = 10_000;
    const runUntil = async (
      target: number,
      maxMs: number,
      sample?: (mb: number, completed: number) => void,
    ): Promise<number> => {
      const end = Date.now() + maxMs;
      for (;;) {
        const n = await completedSoFar();
        sample?.(rssMB(pid), n);
        if (n >= target || Date.now() > end) return n;
        if (enqueued < target && enqueued - n < AHEAD) {
          const wave = Math.min(target - enqueued, AHEAD);
          await enqueueNoops(ctx, store, 'noop', wave);
          enqueued += wave;
        }
        await sleep(500);
      }
    };
    await runUntil(o.warmup, ctx.phaseMaxMs);
    const before = rssMB(pid);
    const fdsBefore = openFds(pid);
    const cpuBefore = cpuSnapshot({}, pid);
    let peak = before;
    let quarter = NaN;
    const t0 = performance.now();
    // The RSS curve: about 40 points over the run, each at the first sample past its share of jobs.
    const samples: RssSample[] = [{ s: 0, completed: 0, rssMB: before }];
    const step = Math.max(1, Math.floor(o.jobs / 40));
    const done = await runUntil(o.warmup + o.jobs, ctx.phaseMaxMs, (mb, n) => {
      peak = Math.max(peak, mb);
      if (Number.isNaN(quarter) && n >= o.warmup + o.jobs / 4) quarter = mb;
      if (n - o.warmup >= samples[samples.length - 1]!.completed + step)
        samples.push({ s: round((performance.now() - t0) / 1000, 1), completed: n - o.warmup, rssMB: mb });
    });
    const seconds = (performance.now() - t0) / 1000;
    const cpu = cpuDelta(cpuBefore, cpuSnapshot({}, pid)).split!;
    const perJob = (s: number): number => round((s * 1000) / Math.max(1, done - o.warmup), 3);
    const after = rssMB(pid);
    await sleep(3_000);
    const idle = rssMB(pid);
    return {
      jobs: o.jobs,
      completed: done - o.warmup,
      seconds: round(seconds),
      rssBeforeMB: before,
      rssAfterMB: after,
      rssPeakMB: peak,
      rssQuarterMB: quarter,
      rssAfterIdleMB: idle,
      openFdsBefore: fdsBefore,
      openFdsAfter: openFds(pid),
      growthPct: round(((after - before) / before) * 100, 1),
      lastThreeQuartersGrowthPct: round(((after - quarter) / quarter) * 100, 1),
      heapGrowthPercent: process.env.JOBD_WORKER__HEAP_GROWTH_PERCENT ?? null,
      cpuMsPerJob: {
        daemon: perJob(cpu.self),
        daemonMainThread: perJob(cpu.selfMain),
        children: perJob(cpu.children),
      },
      samples,
    };
  } finally {
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
    await store.db.dropDatabase().catch(() => {});
    await store.close();
  }
}
