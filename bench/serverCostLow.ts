/**
 * The embedded server's fixed CPU cost per command at a low rate: two builds' servers side by side,
 * interleaved, each driven with the same commands, one in flight at a time, paced to about
 * SERVER_LOW_RATE (50) commands per second. This is the isolated daemon's shape at c=2 on a busy
 * machine, where V8 leaves the server's frames in its lower tiers and each command pays full price;
 * bench/serverCost.ts measures the opposite end (batches at full speed).
 *
 *   SERVER_COST_BASE=/path/to/other/dist node --import tsx bench/serverCostLow.ts
 *
 * Each round and build: a fresh server (that build's dist/embedded, in memory, in its own process),
 * jobd's indexes, SERVER_LOW_JOBS (200) queued no-op jobs, the claim watcher's change stream open
 * (its getMores run by themselves), then per job: claimNext (one findAndModify), the completion
 * (one update, then one insert of the claim and completion events), and every other job a find of
 * the job by id. The figure is the server's user+system CPU over that phase, from /proc, per job and
 * per command the client sent (getMores included). Then SERVER_LOW_IDLE_MS (5000) with only the
 * stream and the driver's monitoring open: the server's idle CPU per second.
 * Settings: SERVER_COST_ROUNDS (3), SERVER_LOW_WARMUP (20 jobs, unmeasured), SERVER_LOW_NODE_ARGS
 * (node flags for both servers). Prints one JSON document (progress on stderr).
 *
 *   SERVER_LOW_PERF=/tmp/server.perf node --import tsx bench/serverCostLow.ts
 *
 * runs this checkout's server once, with --perf-basic-prof, and records `perf record -g` (cpu-clock)
 * of it over the measured phase only, into that file.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import * as store from '../src/store/index.js';
import { ROOT, startEmbeddedProcess } from './lib/jobd.js';
import { buildsFromEnv, cpuSeconds, interleaved, median, serverLauncher } from './lib/serverProcess.js';
import { intSetting, log, round, sleep } from './lib/stats.js';
import type { JobEventDoc } from '../src/types.js';

const JOBS = intSetting('SERVER_LOW_JOBS', 200);
const ROUNDS = intSetting('SERVER_COST_ROUNDS', 3);
const RATE = intSetting('SERVER_LOW_RATE', 50);
const IDLE_MS = intSetting('SERVER_LOW_IDLE_MS', 5000);
const WARMUP = intSetting('SERVER_LOW_WARMUP', 20);
/** Extra node flags for both builds' servers (e.g. --trace-deopt), split on spaces. */
const NODE_ARGS = (process.env.SERVER_LOW_NODE_ARGS ?? '').split(' ').filter(Boolean);

interface Run {
  cpuMsPerJob: number;
  cpuMsPerCommand: number;
  commandsPerJob: number;
  idleCpuMsPerSec: number;
}

async function oneRun(dist: string, perfFile?: string): Promise<Run> {
  const server = await startEmbeddedProcess({
    bin: serverLauncher(dist),
    nodeArgs: [...(perfFile ? ['--perf-basic-prof'] : []), ...NODE_ARGS],
  });
  const s = await store.openStore({
    mongoUri: server.uri,
    database: `jobd_server_low_${randomBytes(3).toString('hex')}`,
    appName: 'jobd-bench server-cost-low',
    monitorCommands: true,
  });
  let commands = 0;
  s.client.on('commandStarted', () => (commands += 1));
  const gap = 1000 / RATE;
  try {
    await store.ensureIndexes(s);
    const now0 = new Date();
    const defaults = { priority: 5, maxAttempts: 3, timeoutMs: 60_000 };
    await store.enqueueMany(
      s,
      Array.from({ length: JOBS + WARMUP }, () => store.resolveNewJob('noop', null, {}, defaults, now0)),
      now0,
    );
    const watcher = store.watchClaimable(s, { onChange: () => {}, onError: () => {} });
    const oneJob = async (i: number): Promise<void> => {
      let claimEvents: JobEventDoc[] = [];
      const job = await store.claimNext(s, {
        owner: 'bench',
        leaseMs: 60_000,
        now: new Date(),
        types: ['noop'],
        eventSink: (events) => (claimEvents = events),
      });
      if (!job) throw new Error('no job left to claim');
      await sleep(gap);
      await store.settleManyIfRunning(
        s,
        [
          {
            kind: 'complete',
            jobId: job._id,
            token: job.lease!.token,
            attempt: job.attempts,
            seq: job.seq,
            result: null,
          },
        ],
        { owner: 'bench', now: new Date(), errorHistory: 5 },
        () => claimEvents,
      );
      await sleep(2 * gap);
      if (i % 2 === 0) {
        await s.jobs.findOne({ _id: job._id });
        await sleep(gap);
      }
    };
    // Unmeasured: the stream opens, the first use of each command is paid.
    for (let i = 0; i < WARMUP; i++) await oneJob(i);
    const perf = perfFile
      ? spawn(
          'perf',
          ['record', '-e', 'cpu-clock', '-F', '2000', '-g', '-o', perfFile, '-p', String(server.pid)],
          {
            stdio: 'ignore',
          },
        )
      : null;
    if (perf) await sleep(1000);
    const cpu0 = cpuSeconds(server.pid);
    const commands0 = commands;
    for (let i = 0; i < JOBS; i++) await oneJob(i);
    const cpu = (cpuSeconds(server.pid) - cpu0) * 1000;
    if (perf) {
      perf.kill('SIGINT');
      await new Promise((r) => perf.once('exit', r));
    }
    const sent = commands - commands0;
    const idle0 = cpuSeconds(server.pid);
    await sleep(IDLE_MS);
    const idle = (cpuSeconds(server.pid) - idle0) * 1000;
    await watcher.close();
    return {
      cpuMsPerJob: round(cpu / JOBS, 3),
      cpuMsPerCommand: round(cpu / sent, 3),
      commandsPerJob: round(sent / JOBS, 2),
      idleCpuMsPerSec: round(idle / (IDLE_MS / 1000), 2),
    };
  } finally {
    await s.client.close();
    await server.close();
  }
}

async function main(): Promise<void> {
  const perfFile = process.env.SERVER_LOW_PERF;
  if (perfFile) {
    const run = await oneRun(join(ROOT, 'dist'), perfFile);
    process.stdout.write(
      `${JSON.stringify({ ...run, perf: perfFile, load: loadavg().map((v) => round(v)) })}\n`,
    );
    return;
  }
  const builds = buildsFromEnv(ROOT);
  const load0 = loadavg();
  const runs = await interleaved(builds, ROUNDS, async (b, r) => {
    const run = await oneRun(b.dist);
    log(`round ${r + 1} ${b.name}: ${JSON.stringify(run)} load ${round(loadavg()[0]!)}`);
    return run;
  });
  const medians = (name: 'base' | 'this') => {
    const rs = runs[name];
    return {
      cpuMsPerJob: median(rs.map((x) => x.cpuMsPerJob)),
      cpuMsPerCommand: median(rs.map((x) => x.cpuMsPerCommand)),
      idleCpuMsPerSec: median(rs.map((x) => x.idleCpuMsPerSec)),
    };
  };
  const m = { base: medians('base'), this: medians('this') };
  const out = {
    bench: 'embedded server CPU per job and per command at a low rate (one command in flight)',
    jobs: JOBS,
    rate: RATE,
    builds: Object.fromEntries(builds.map((b) => [b.name, b.dist])),
    runs,
    median: m,
    ratio: {
      cpuMsPerJob: round(m.this.cpuMsPerJob / m.base.cpuMsPerJob, 3),
      idleCpuMsPerSec: round(m.this.idleCpuMsPerSec / Math.max(0.01, m.base.idleCpuMsPerSec), 3),
    },
    loadAvg: { start: load0.map((v) => round(v)), end: loadavg().map((v) => round(v)) },
  };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
