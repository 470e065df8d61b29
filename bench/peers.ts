/**
 * jobd against its peers, on the same machine and the same workload: prints ONE JSON document on
 * stdout (progress goes to stderr).
 *
 *   npm run bench:peers                                  20,000 no-op jobs, concurrency 32, 3 rounds
 *   PEERS_JOBS=2000 PEERS_ROUNDS=1 npm run bench:peers   a quick run
 *   PEERS_SYSTEMS=jobd-pooled,bullmq-sandboxed npm run bench:peers
 *
 * Settings: PEERS_JOBS (20000), PEERS_CONCURRENCY (32), PEERS_ROUNDS (3), PEERS_SYSTEMS (all),
 * PEERS_CHUNK (1000, jobs per enqueue call), PEERS_RUN_MAX_S (600, caps one run),
 * PEERS_PAUSE_MS (1000, between runs), PEERS_PGBOSS_BATCH (50), PEERS_PGBOSS_LOCAL_CONCURRENCY,
 * PEERS_WARMUP_JOBS (5000; 0 for none).
 *
 * Before the measured rounds, each system runs once on PEERS_WARMUP_JOBS jobs against the same database
 * server (printed under `warmup`, left out of the medians): the servers stay up for the whole bench, and
 * a server's first jobs are not its steady state (the embedded server's code is compiled as it runs;
 * PostgreSQL and Redis fill their caches), so without it the first round measures that start-up.
 *
 * Each run: the runner enqueues every job into an empty database with no worker running; the clock
 * starts when it starts the worker and stops when the store holds every job as completed. Runs are
 * interleaved: each round runs every system once, starting one system later than the round before.
 * See docs/benchmarks.md.
 */
import { availableParallelism, cpus, loadavg } from 'node:os';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, startEmbeddedProcess } from './lib/jobd.js';
import { killCurrentRunner, runOnce, type RunRecord } from './lib/peerRun.js';
import { SYSTEMS, type PeerSystem, type ServerKind } from './lib/peerSystems.js';
import { ensurePeersInstalled, nodeVersion, peersNode } from './lib/peersInstall.js';
import { startPostgres, startRedis, stopAllServers } from './lib/servers.js';
import { log, round, sleep } from './lib/stats.js';

class UsageError extends Error {}

function intSetting(name: string, dflt: number, min = 1): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min)
    throw new UsageError(`${name} = '${raw}' is not allowed: must be an integer >= ${min}`);
  return n;
}

function selectedSystems(): PeerSystem[] {
  const raw = process.env.PEERS_SYSTEMS;
  if (!raw) return [...SYSTEMS];
  const names = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = names.filter((n) => !SYSTEMS.some((s) => s.name === n));
  if (unknown.length || !names.length)
    throw new UsageError(
      `PEERS_SYSTEMS = '${raw}' is not allowed: ${unknown.length ? `unknown ${unknown.join(', ')}; ` : ''}` +
        `choose from ${SYSTEMS.map((s) => s.name).join(', ')}`,
    );
  return SYSTEMS.filter((s) => names.includes(s.name));
}

interface Server {
  kind: ServerKind;
  version: string;
  url: string;
  pid: number;
  stop(): Promise<void>;
}

async function startServer(kind: ServerKind): Promise<Server | null> {
  if (kind === 'embedded') {
    const s = await startEmbeddedProcess();
    return { kind, version: `jobd ${jobdVersion()}`, url: s.uri, pid: s.pid, stop: s.close };
  }
  const s = kind === 'redis' ? await startRedis() : await startPostgres();
  return s && { kind, version: s.version, url: s.url, pid: s.pid, stop: s.stop };
}

function jobdVersion(): string {
  return (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

function median(values: number[]): number {
  const s = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function medians(runs: RunRecord[]) {
  const ok = runs.filter((r) => !r.error && !r.capped);
  const m = (f: (r: RunRecord) => number, digits = 1): number => round(median(ok.map(f)), digits);
  return {
    runs: ok.length,
    jobsPerSec: m((r) => r.jobsPerSec),
    seconds: m((r) => r.seconds, 3),
    cpuPer1000Jobs: {
      db: m((r) => r.cpuPer1000Jobs.db, 3),
      queue: m((r) => r.cpuPer1000Jobs.queue, 3),
      children: m((r) => r.cpuPer1000Jobs.children, 3),
      total: m((r) => r.cpuPer1000Jobs.total, 3),
    },
  };
}

const servers = new Map<ServerKind, Server>();
async function stopServers(): Promise<void> {
  for (const [kind, s] of servers) {
    servers.delete(kind);
    await s.stop().catch((err: unknown) => log(`stopping ${kind}: ${String(err)}`));
  }
}

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    log(`${signal}: stopping the runner and the servers`);
    killCurrentRunner();
    void Promise.all([stopServers(), stopAllServers()]).finally(() => process.exit(130));
  });
}

async function main(): Promise<void> {
  const started = Date.now();
  const jobs = intSetting('PEERS_JOBS', 20_000);
  const concurrency = intSetting('PEERS_CONCURRENCY', 32);
  const rounds = intSetting('PEERS_ROUNDS', 3);
  const chunk = intSetting('PEERS_CHUNK', 1_000);
  const maxSeconds = intSetting('PEERS_RUN_MAX_S', 600);
  const pauseMs = intSetting('PEERS_PAUSE_MS', 1_000, 0);
  const warmupJobs = intSetting('PEERS_WARMUP_JOBS', 5_000, 0);
  const shape = { jobs, concurrency };
  const wanted = selectedSystems().map((system) => {
    try {
      return { system, options: system.options(shape, process.env) };
    } catch (err) {
      throw new UsageError(err instanceof Error ? err.message : String(err));
    }
  });

  const project = { path: process.execPath, version: process.version };
  let peers: { path: string; version: string } | null = null;
  if (wanted.some((w) => !w.system.jobd)) {
    ensurePeersInstalled();
    const path = peersNode();
    peers = { path, version: nodeVersion(path) };
  }

  const skipped: Record<string, string> = {};
  for (const kind of new Set(wanted.map((w) => w.system.server))) {
    log(`starting ${kind}`);
    const s = await startServer(kind);
    if (s) servers.set(kind, s);
    else {
      const pkg = kind === 'redis' ? 'redis-server' : 'postgresql';
      for (const w of wanted.filter((w) => w.system.server === kind))
        skipped[w.system.name] = `${kind} is not installed (apt-get install -y ${pkg})`;
      log(
        `${kind} is not installed: skipping ${wanted.filter((w) => w.system.server === kind).length} system(s)`,
      );
    }
  }
  const runnable = wanted.filter((w) => servers.has(w.system.server));

  const out: Record<string, unknown> = {
    bench: 'jobd peers',
    timed:
      'every job is enqueued into an empty database before the worker starts (enqueueSeconds, not timed); ' +
      'seconds runs from the call that starts the worker to the moment the store holds every job as completed ' +
      '(the system reported each completion, then a query confirmed them all). jobsPerSec = jobs / seconds.',
    cpu:
      'CPU seconds (utime+stime from /proc, children reaped or live included) between the same two moments: ' +
      'db = the database server process tree, queue = the process running the queue library, ' +
      'children = its descendants (sandboxed / pooled job processes)',
    jobs,
    concurrency,
    rounds,
    warmupJobs,
    chunk,
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? null,
    loadAvgAtStart: loadavg().map((v) => round(v)),
    node: { project: project.version, peers: peers?.version ?? null },
    servers: Object.fromEntries([...servers].map(([k, s]) => [k, s.version])),
    systems: Object.fromEntries(
      runnable.map((w) => [
        w.system.name,
        {
          label: w.system.label,
          reference: !!w.system.reference,
          node: w.system.node === 'project' ? project.version : peers?.version,
          options: w.options,
        },
      ]),
    ),
    skipped,
  };

  const runs: RunRecord[] = [];
  const warmup: RunRecord[] = [];
  const runId = randomBytes(3).toString('hex');
  let n = 0;
  for (let i = 0; i < runnable.length && warmupJobs > 0 && !interrupted; i++) {
    const { system, options } = runnable[i]!;
    log(`warm-up: ${system.name}, ${warmupJobs} jobs at concurrency ${concurrency} (not measured)`);
    const record = await runOnce({
      system,
      round: 0,
      node: system.node === 'project' ? project : peers!,
      server: servers.get(system.server)!,
      database: `peers_${runId}_${++n}`,
      jobs: warmupJobs,
      concurrency,
      chunk,
      maxSeconds,
      options,
      root: ROOT,
    });
    warmup.push(record);
    log(`${system.name} warm-up: ${JSON.stringify(record)}`);
    if (pauseMs > 0) await sleep(pauseMs);
  }
  for (let r = 0; r < rounds && !interrupted; r++) {
    for (let i = 0; i < runnable.length && !interrupted; i++) {
      const { system, options } = runnable[(i + r) % runnable.length]!;
      const server = servers.get(system.server)!;
      log(`round ${r + 1}/${rounds}: ${system.name}, ${jobs} jobs at concurrency ${concurrency}`);
      const record = await runOnce({
        system,
        round: r + 1,
        node: system.node === 'project' ? project : peers!,
        server,
        database: `peers_${runId}_${++n}`,
        jobs,
        concurrency,
        chunk,
        maxSeconds,
        options,
        root: ROOT,
      });
      runs.push(record);
      log(`${system.name}: ${JSON.stringify(record)}`);
      if (pauseMs > 0) await sleep(pauseMs);
    }
  }

  const bySystem = Object.fromEntries(
    runnable.map((w) => [w.system.name, medians(runs.filter((r) => r.system === w.system.name))]),
  );
  const ratios: Record<string, Record<string, number>> = {};
  for (const j of runnable.filter((w) => w.system.jobd)) {
    ratios[j.system.name] = {};
    for (const o of runnable.filter((w) => !w.system.jobd)) {
      ratios[j.system.name]![o.system.name] = round(
        bySystem[j.system.name]!.jobsPerSec / bySystem[o.system.name]!.jobsPerSec,
        3,
      );
    }
  }
  out.warmup = warmup;
  out.runs = runs;
  out.medians = bySystem;
  out.ratios = ratios;
  out.failedRuns = runs.filter((r) => r.error || r.capped).length;
  out.loadAvgAtEnd = loadavg().map((v) => round(v));
  out.totalSeconds = round((Date.now() - started) / 1000, 1);
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

main()
  .catch((err: unknown) => {
    process.stderr.write(
      `bench:peers failed: ${err instanceof Error ? (err instanceof UsageError ? err.message : (err.stack ?? err.message)) : String(err)}\n`,
    );
    process.exitCode = err instanceof UsageError ? 2 : 1;
  })
  .finally(() => stopServers());
