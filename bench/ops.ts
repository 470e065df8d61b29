/**
 * Operations at scale, through jobctl as a subprocess against the embedded server (in memory):
 * migrate --dry-run, migrate and rollback of legacy datasets; perf --days 7 and cleanup over finished
 * jobs (seconds, rates, and jobctl's peak RSS from /proc/<pid>/status VmHWM). Each phase also gives
 * the CPU seconds jobctl and the server used and the load average, since on a shared machine the wall
 * time depends on the neighbours. The jobs carry jobd's own indexes, as a daemon start creates them.
 * The jobs' phases start once the server is idle after seeding them (`settle`: the garbage collector's
 * marking of the freshly filled heap is not counted as the first phase's server CPU).
 * Prints JSON. The server holds a million jobs in memory: bench:ops gives Node a 6 GB heap.
 *
 *   npm run bench:ops                       # 100,000 datasets, 1,000,000 jobs (the targets' sizes)
 *   npm run bench:ops -- --datasets 20000 --jobs 200000
 *   npm run bench:ops -- --datasets 0       # only the jobs' phases (--jobs 0: only the migration's)
 *   npm run bench:ops -- --datasets 0 --jobs 300000 --only cleanup   # one jobs' phase: perf or cleanup
 *   npm run bench:ops -- --cleanup-batch 10000   # cleanup's --batch-size (default: jobctl's)
 *
 *   BENCH_DIST=other-dist npm run bench:ops   # the server of another build
 *   BENCH_BUILD=../other npm run bench:ops    # another checkout's build: server, jobctl, indexes
 *   BENCH_PROFILE=prof npm run bench:ops      # CPU profiles of every phase into prof/: the
 *                                             # server's (this process) and jobctl's (--cpu-prof)
 *
 * Targets: migrate >= 5,000 datasets/s; cleanup >= 20,000 jobs/s with jobctl under 200 MB RSS;
 * perf --days 7 <= 2 s. Not part of `npm test`.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { MongoClient, ObjectId, type Document } from 'mongodb';
import { insertLegacyDatasets } from '../tests/fixtures/legacy/generate.js';

const ROOT = resolve(import.meta.dirname, '..');
// The compiled server, as jobd-embedded runs it (bench:ops builds first). BENCH_BUILD measures another
// checkout's build as a whole (its server, jobctl and index definitions), for A/B runs side by side;
// BENCH_DIST only the server of another build (jobctl then comes from this checkout's dist).
const BUILD = resolve(ROOT, process.env.BENCH_BUILD ?? '.');
const DIST = process.env.BENCH_BUILD ? join(BUILD, 'dist') : resolve(ROOT, process.env.BENCH_DIST ?? 'dist');
const { startEmbeddedServer } = (await import(
  pathToFileURL(join(DIST, 'embedded/index.js')).href
)) as typeof import('../src/embedded/index.js');
const { JOB_INDEXES } = (await import(
  pathToFileURL(join(BUILD, 'dist/store/indexes.js')).href
)) as typeof import('../src/store/indexes.js');
const JOBCTL = join(BUILD, 'bin/jobctl');

const PROFILE_DIR = process.env.BENCH_PROFILE ? resolve(process.env.BENCH_PROFILE) : undefined;

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

function peakRss(pid: number): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch {
    return null;
  }
}

interface Run {
  secs: number;
  out: Document;
  peakRssMb: number | null;
  /** CPU seconds of jobctl and of the server (this process) over the run: the machine may be shared. */
  cpu: { jobctl: number | null; server: number };
  loadAvg1m: number;
}

/** Runs jobctl; resolves with seconds, parsed JSON stdout, the peak RSS seen and CPU times. */
function jobctl(args: string[], profile?: string): Promise<Run> {
  return new Promise((res, rej) => {
    const prof =
      profile && PROFILE_DIR
        ? ['--cpu-prof', '--cpu-prof-dir', PROFILE_DIR, '--cpu-prof-name', `jobctl-${profile}.cpuprofile`]
        : [];
    const started = process.hrtime.bigint();
    const serverCpu = process.cpuUsage();
    const loadAvg1m = Math.round(loadavg()[0]! * 100) / 100;
    const child = spawn(process.execPath, [...prof, JOBCTL, ...args, '--json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let peak = 0;
    let cpu: number | null = null;
    const sample = () => {
      peak = Math.max(peak, peakRss(child.pid!) ?? 0);
      cpu = cpuSeconds(child.pid!) ?? cpu;
    };
    const timer = setInterval(sample, 50);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', sample); // still readable until reaped
    child.on('close', (code) => {
      clearInterval(timer);
      const secs = Number(process.hrtime.bigint() - started) / 1e9;
      if (code !== 0) return rej(new Error(`jobctl ${args.join(' ')} exited ${code}: ${stderr}`));
      const used = process.cpuUsage(serverCpu);
      res({
        secs,
        out: JSON.parse(stdout) as Document,
        peakRssMb: peak ? Math.round(peak / 1024 / 1024) : null,
        cpu: { jobctl: cpu, server: Math.round((used.user + used.system) / 1e4) / 100 },
        loadAvg1m,
      });
    });
  });
}

/** Each phase's figures on stderr as it ends: a long run shows its progress (stdout stays the JSON). */
function report(result: Document, name: string): void {
  process.stderr.write(`${name}: ${JSON.stringify(result[name])}\n`);
}

/** The figures every phase reports besides its own. */
function runFigures(r: Run): Document {
  return { peakRssMb: r.peakRssMb, cpuSeconds: r.cpu, loadAvg1m: r.loadAvg1m };
}

async function seedJobs(db: ReturnType<MongoClient['db']>, n: number): Promise<void> {
  const now = Date.now();
  const types = ['google_sync', 'dataset_conversion', 'file_upload', 'rsync_transfer', 'data_validation'];
  for (let start = 0; start < n; start += 10_000) {
    const docs: Document[] = [];
    for (let i = start; i < Math.min(n, start + 10_000); i++) {
      const finished = now - 3_600_000 - (i % 6) * 86_400_000 - (i % 3600) * 1000;
      const started = finished - 1000 - (i % 600) * 1000;
      docs.push({
        _id: new ObjectId().toHexString(),
        type: types[i % types.length],
        params: { i },
        state: i % 20 === 0 ? 'failed' : i % 50 === 1 ? 'cancelled' : 'completed',
        priority: 5,
        runAt: new Date(started - 5000),
        attempts: 1 + (i % 7 === 0 ? 1 : 0),
        maxAttempts: 3,
        timeoutMs: null,
        createdAt: new Date(started - 5000 - (i % 60) * 1000),
        updatedAt: new Date(finished),
        startedAt: new Date(started),
        finishedAt: new Date(finished),
        errors: [],
        tags: [],
        seq: 3,
      });
    }
    await db.collection('jobs').insertMany(docs);
  }
}

async function migrationPhases(
  client: MongoClient,
  common: string[],
  datasets: number,
  result: Document,
): Promise<void> {
  const mdb = 'bench_migrate';
  await insertLegacyDatasets(client.db(mdb).collection('visstoredatas'), datasets, { batch: 10_000 });
  const dry = await profiled('migrate-dry-run', () =>
    jobctl(['migrate', '--dry-run', '--database', mdb, ...common], 'migrate-dry-run'),
  );
  result.migrateDryRun = {
    seconds: dry.secs,
    datasetsPerSec: Math.round(datasets / dry.secs),
    ...runFigures(dry),
  };
  report(result, 'migrateDryRun');
  const mig = await profiled('migrate', () =>
    jobctl(['migrate', '--database', mdb, ...common], 'migrate'),
  );
  result.migrate = {
    seconds: mig.secs,
    datasetsPerSec: Math.round(datasets / mig.secs),
    migrated: mig.out.datasets,
    jobsCreated: mig.out.jobs,
    ...runFigures(mig),
  };
  report(result, 'migrate');
  const rb = await profiled('rollback', () =>
    jobctl(['migrate', 'rollback', '--database', mdb, ...common], 'rollback'),
  );
  result.rollback = {
    seconds: rb.secs,
    datasetsPerSec: Math.round(Number(rb.out.datasets) / rb.secs),
    restored: rb.out.datasets,
    ...runFigures(rb),
  };
  report(result, 'rollback');
  await client.db(mdb).dropDatabase();
}

/** Runs a phase with this process (the server) under the CPU profiler when BENCH_PROFILE is set. */
async function profiled<T>(name: string, run: () => Promise<T>): Promise<T> {
  if (!PROFILE_DIR) return run();
  mkdirSync(PROFILE_DIR, { recursive: true });
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  try {
    return await run();
  } finally {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(join(PROFILE_DIR, `server-${name}.cpuprofile`), JSON.stringify(profile));
    session.disconnect();
  }
}

async function jobPhases(
  client: MongoClient,
  common: string[],
  jobs: number,
  result: Document,
  only: string | undefined,
): Promise<void> {
  const jdb = 'bench_jobs';
  // jobd's own indexes, as every daemon start ensures them (cleanup's checks rely on them).
  await client.db(jdb).collection('jobs').createIndexes(JOB_INDEXES);
  await client
    .db(jdb)
    .collection('events')
    .createIndexes([{ key: { jobId: 1, at: 1 }, name: 'job_at' }]);
  const seedStarted = process.hrtime.bigint();
  await seedJobs(client.db(jdb), jobs);
  result.seedJobsSeconds = Number(process.hrtime.bigint() - seedStarted) / 1e9;
  report(result, 'seedJobsSeconds');
  result.settle = await settle();
  report(result, 'settle');
  if (only === undefined || only === 'perf') {
    const perf = await profiled('perf', () =>
      jobctl(['perf', '--days', '7', '--database', jdb, ...common], 'perf'),
    );
    result.perf7d = {
      seconds: perf.secs,
      types: (perf.out.types as unknown[]).length,
      ...runFigures(perf),
    };
    report(result, 'perf7d');
  }
  if (only === undefined || only === 'cleanup') {
    const batch = flag('cleanup-batch', 0);
    const batchArgs = batch > 0 ? ['--batch-size', String(batch)] : [];
    const clean = await profiled('cleanup', () =>
      jobctl(['cleanup', '--older-than', '1m', ...batchArgs, '--database', jdb, ...common], 'cleanup'),
    );
    result.cleanup = {
      seconds: clean.secs,
      jobsPerSec: Math.round(Number(clean.out.jobs) / clean.secs),
      deleted: clean.out.jobs,
      ...runFigures(clean),
    };
    report(result, 'cleanup');
  }
}

/**
 * Waits until this process (the server) is idle after the seeding: a million inserted jobs leave the
 * garbage collector a marking cycle over the whole heap (seconds of CPU, on helper threads too), which
 * otherwise runs during the next phase and is counted as that phase's server CPU. Idle: under 10% of a
 * core over half a second; at most 60 s. Reports how long it took and the CPU it used.
 */
async function settle(): Promise<Document> {
  const started = process.hrtime.bigint();
  const total = process.cpuUsage();
  for (let i = 0; i < 120; i++) {
    const before = process.cpuUsage();
    await new Promise((r) => setTimeout(r, 500));
    const used = process.cpuUsage(before);
    if (used.user + used.system < 50_000) break;
  }
  const used = process.cpuUsage(total);
  return {
    seconds: Math.round(Number(process.hrtime.bigint() - started) / 1e7) / 100,
    serverCpuSeconds: Math.round((used.user + used.system) / 1e4) / 100,
  };
}

async function main(): Promise<void> {
  const datasets = flag('datasets', 100_000);
  const jobs = flag('jobs', 1_000_000);
  const onlyAt = process.argv.indexOf('--only');
  const only = onlyAt >= 0 ? process.argv[onlyAt + 1] : undefined;
  if (only !== undefined && only !== 'perf' && only !== 'cleanup')
    throw new Error(`--only must be perf or cleanup, got ${String(only)}`);
  const server = await startEmbeddedServer({ port: 0 });
  const client = await MongoClient.connect(server.uri);
  const common = ['--mongo-uri', server.uri];
  const result: Document = { datasets, jobs };
  try {
    if (datasets > 0) await migrationPhases(client, common, datasets, result);
    if (jobs > 0) await jobPhases(client, common, jobs, result, only);
    result.targets = {
      migrateDatasetsPerSec: 5000,
      cleanupJobsPerSec: 20_000,
      cleanupPeakRssMb: 200,
      perfSeconds: 2,
    };
  } finally {
    await client.close();
    await server.close();
  }
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

await main();
