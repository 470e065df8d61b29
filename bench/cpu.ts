/**
 * CPU seconds per 1,000 no-op jobs, per process: the daemon, its pooled children, the embedded server.
 * Prints ONE JSON document on stdout (progress goes to stderr).
 *
 *   npm run bench:cpu                      BENCH_CPU_JOBS (20000) jobs at BENCH_CPU_CONCURRENCY (32)
 *   BENCH_CPU_MAX_JOBS_PER_CHILD=n         pool.maxJobsPerChild (default: jobd's); the children's
 *                                          RSS is sampled every second (childrenRssMb: the largest
 *                                          seen, and each live child's at the end, in MB;
 *                                          childrenSeen counts the children seen alive)
 *   BENCH_CPU_WARMUP=n                     jobs run before the measurement starts (default 4 per
 *                                          concurrent job); 0 counts the children's start-up too,
 *                                          as bench:peers does
 *   BENCH_DIST=dist-old npm run bench:cpu  measure another build (see bench/lib/jobd.ts)
 *   BENCH_CPU_MODE=inline                  the noop type in mode inline (no children; default pooled)
 *   BENCH_CPU_SERVER_NODE_ARGS='--x=1'     node options for the embedded server's process only
 *   BENCH_CPU_COMMANDS=1                   also count the daemon's database commands per job, by
 *                                          command and collection (the driver's command monitoring
 *                                          costs daemon CPU: leave it off for the CPU figures),
 *                                          and the BSON bytes of those commands per job (what the
 *                                          server decodes and evaluates: commandBytesPerJob)
 * daemonGcPer1000Jobs: the daemon's garbage collections in the measured window (minor ones follow what it
 * allocates per job). (npm run bench:profile records where that CPU goes.)
 *
 * The jobs are queued before the daemon starts, so the daemon's figure is its own work (claims,
 * hand-over to children, outcomes), not the producer's. The embedded server runs in its own process
 * (bin/jobd-embedded) so its CPU can be read apart. Children's CPU is that of the children alive at
 * the end plus what the process reaped from those that exited, minus what the children alive at the
 * start had spent already: the daemon is warmed up first (children started, code compiled), so child
 * start-ups count only when children are recycled during the run.
 * Wall-clock jobs/s is reported too, but on a shared machine CPU per job is the steadier figure.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { constants as perfConstants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { calculateObjectSize } from 'bson';
import pino from 'pino';
import { loadJobd, startEmbeddedProcess } from './lib/jobd.js';
import { configFor, enqueueNoops, openProducer } from './lib/phases.js';
import { log, round } from './lib/stats.js';

const JOBS = Number(process.env.BENCH_CPU_JOBS ?? 20_000);
const CONCURRENCY = Number(process.env.BENCH_CPU_CONCURRENCY ?? 32);
const WARMUP = process.env.BENCH_CPU_WARMUP ?? String(CONCURRENCY * 4);
if (!/^\d+$/.test(WARMUP)) {
  process.stderr.write(`BENCH_CPU_WARMUP = '${WARMUP}' is not allowed: must be an integer >= 0\n`);
  process.exit(2);
}

/** user+system CPU seconds of a live process, and of its reaped children, from /proc. */
function procCpu(pid: number | 'self'): { own: number; children: number } {
  if (pid !== 'self' && !existsSync(`/proc/${pid}/stat`)) return { own: 0, children: 0 };
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const tick = 100; // USER_HZ on Linux
  // fields after the name: state(0) ... utime(11) stime(12) cutime(13) cstime(14)
  return { own: (Number(f[11]) + Number(f[12])) / tick, children: (Number(f[13]) + Number(f[14])) / tick };
}

/** Resident set size of a live process in MB (0 once it is gone). */
function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** CPU seconds of this process's live children (not `except`) plus what it reaped from exited ones. */
function childrenCpu(except: number): { reaped: number; live: Map<number, number> } {
  const live = new Map<number, number>();
  const tasks = readdirSync(`/proc/${process.pid}/task`);
  for (const tid of tasks) {
    const list = readFileSync(`/proc/${process.pid}/task/${tid}/children`, 'utf8').trim();
    for (const pid of list ? list.split(' ').map(Number) : []) {
      if (pid !== except) live.set(pid, procCpu(pid).own);
    }
  }
  return { reaped: procCpu('self').children, live };
}

async function main(): Promise<void> {
  const jobd = await loadJobd();
  // BENCH_CPU_SERVER_NODE_ARGS: node options for the embedded server's process alone (GC settings, say).
  const serverNodeArgs = (process.env.BENCH_CPU_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  for (const a of serverNodeArgs) {
    if (!/^--[a-z0-9-]+(=[A-Za-z0-9._-]+)?$/.test(a)) {
      process.stderr.write(
        `BENCH_CPU_SERVER_NODE_ARGS: '${a}' is not allowed: must be node options like --name=value\n`,
      );
      process.exit(2);
    }
  }
  const server = await startEmbeddedProcess({ nodeArgs: serverNodeArgs });
  const serverPid = server.pid;
  const ctx = {
    jobd,
    uri: server.uri,
    newDb: (label: string) => `jobd_cpu_${randomBytes(3).toString('hex')}_${label}`,
    phaseMaxMs: 600_000,
  };
  const load0 = loadavg();
  try {
    const db = ctx.newDb('noop');
    const base = configFor(ctx, db, { concurrency: CONCURRENCY });
    const perChild = process.env.BENCH_CPU_MAX_JOBS_PER_CHILD;
    const withPool = perChild ? { ...base, pool: { ...base.pool, maxJobsPerChild: Number(perChild) } } : base;
    // BENCH_CPU_MODE=inline: the noop type runs in the daemon (no children).
    const mode = process.env.BENCH_CPU_MODE || 'pooled';
    if (mode !== 'pooled' && mode !== 'inline') {
      process.stderr.write(`BENCH_CPU_MODE = '${mode}' is not allowed: must be pooled or inline\n`);
      process.exit(2);
    }
    const config = {
      ...withPool,
      jobTypes: {
        ...withPool.jobTypes,
        noop: { ...withPool.jobTypes.noop!, mode: mode as 'pooled' | 'inline' },
      },
    };
    const producer = await openProducer(ctx, db);
    log(`cpu: queueing ${JOBS} no-op jobs`);
    await enqueueNoops(ctx, producer, 'noop', JOBS);
    await producer.close();

    const countCommands = process.env.BENCH_CPU_COMMANDS === '1';
    const d = await jobd.startDaemon({
      config,
      logger: pino({ level: 'silent' }),
      monitorCommands: countCommands,
    });
    let counting = false;
    const commands: Record<string, number> = {};
    const commandBytes: Record<string, number> = {};
    if (countCommands) {
      d.store.client.on('commandStarted', (e) => {
        if (!counting) return;
        const cmd = e.command as Record<string, unknown>;
        const coll = cmd[e.commandName];
        const key = `${e.commandName} ${typeof coll === 'string' ? coll : (cmd.collection ?? '')}`.trim();
        commands[key] = (commands[key] ?? 0) + 1;
        commandBytes[key] = (commandBytes[key] ?? 0) + calculateObjectSize(cmd);
      });
    }
    // Warm-up: children started, code paths compiled.
    // One listener counts every completion: outcomes land in bulk, so a listener added later
    // could miss some of a batch.
    let done = 0;
    let onDone: (() => void) | null = null;
    const off = d.on('job:completed', () => {
      if (++done === JOBS) onDone?.();
    });
    const warm = Number(WARMUP);
    await new Promise<void>((r) => {
      const tick = setInterval(() => done >= warm && (clearInterval(tick), r()), 10);
    });
    // The daemon's garbage collections in the measured window (minor ones scale with what it allocates
    // per job, and are steadier than CPU seconds on a loaded machine).
    const gc = { minor: 0, major: 0, ms: 0 };
    const gcObserver = new PerformanceObserver((list) => {
      if (!counting) return;
      for (const e of list.getEntries()) {
        const kind = (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind;
        if (kind === perfConstants.NODE_PERFORMANCE_GC_MINOR) gc.minor++;
        else gc.major++;
        gc.ms += e.duration;
      }
    });
    gcObserver.observe({ entryTypes: ['gc'] });
    const startedWith = done;
    const server0 = procCpu(serverPid).own;
    const self0 = process.cpuUsage();
    const children0 = childrenCpu(serverPid);
    const t0 = performance.now();
    counting = true;
    // The children's RSS while they run (a child recycled mid-run is seen until it exits).
    let rssMax = 0;
    const seen = new Set<number>(children0.live.keys());
    const rssTick = setInterval(() => {
      for (const pid of childrenCpu(serverPid).live.keys()) {
        seen.add(pid);
        rssMax = Math.max(rssMax, rssMb(pid));
      }
    }, 1000);
    await new Promise<void>((r) => {
      onDone = r;
      if (done >= JOBS) r();
    });
    clearInterval(rssTick);
    off();
    counting = false;
    gcObserver.disconnect();
    const r = { done: done - startedWith, at: performance.now() };
    const server1 = procCpu(serverPid).own;
    const self1 = process.cpuUsage(self0);
    const children1 = childrenCpu(serverPid);
    const seconds = (r.at - t0) / 1000;
    const childrenAlive = children1.live.size;
    const rssEnd = [...children1.live.keys()].map((pid) => round(rssMb(pid), 1));
    for (const pid of children1.live.keys()) seen.add(pid);
    for (const mb of rssEnd) rssMax = Math.max(rssMax, mb);
    let children = children1.reaped - children0.reaped;
    for (const cpu of children1.live.values()) children += cpu;
    for (const cpu of children0.live.values()) children -= cpu;
    await d.stop();
    const per1k = (s: number): number => round((s * 1000) / Math.max(1, r.done), 3);
    const daemon = (self1.user + self1.system) / 1e6;
    const serverCpu = server1 - server0;
    const out: Record<string, unknown> = {
      bench: 'jobd CPU per 1,000 no-op jobs',
      node: process.version,
      jobs: r.done,
      warmupJobs: startedWith,
      completed: r.done,
      concurrency: CONCURRENCY,
      claimBatchSize: config.worker.claimBatchSize,
      maxJobsPerChild: config.pool.maxJobsPerChild,
      childrenAlive,
      // Children alive at the start, at the end, or at one of the samples: a lower bound on those run.
      childrenSeen: seen.size,
      childrenRssMb: { max: round(rssMax, 1), atEnd: rssEnd },
      seconds: round(seconds),
      jobsPerSec: round(r.done / seconds, 1),
      cpuSecondsPer1000Jobs: {
        daemon: per1k(daemon),
        children: per1k(children),
        embeddedServer: per1k(serverCpu),
        total: per1k(daemon + children + serverCpu),
      },
      daemonGcPer1000Jobs: {
        minor: round((gc.minor * 1000) / Math.max(1, r.done), 2),
        other: round((gc.major * 1000) / Math.max(1, r.done), 2),
        ms: round((gc.ms * 1000) / Math.max(1, r.done), 1),
      },
      ...(countCommands
        ? {
            commandsPerJob: Object.fromEntries(
              Object.entries(commands)
                .sort((a, b) => b[1] - a[1])
                .map(([k, n]) => [k, round(n / Math.max(1, r.done), 3)]),
            ),
            commandBytesPerJob: Object.fromEntries(
              Object.entries(commandBytes)
                .sort((a, b) => b[1] - a[1])
                .map(([k, n]) => [k, round(n / Math.max(1, r.done), 1)]),
            ),
          }
        : {}),
      loadAvg: { start: load0.map((v) => round(v)), end: loadavg().map((v) => round(v)) },
      ...(serverNodeArgs.length > 0 ? { serverNodeArgs } : {}),
    };
    log(JSON.stringify(out.cpuSecondsPer1000Jobs));
    await server.close();
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } catch (err) {
    await server.close();
    throw err;
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
