/**
 * The embedded server's CPU per 1,000 jobs on the daemon's exact write path, without the daemon's
 * scheduling: two builds' servers side by side, interleaved, so a loaded machine shows the difference.
 *
 *   SERVER_COST_BASE=/path/to/other/dist node --import tsx bench/serverCost.ts
 *
 * Each round and build: a fresh server (that build's dist/embedded, in memory, in its own process),
 * jobd's indexes, SERVER_COST_JOBS (5000) queued no-op jobs, the claim watcher's change stream open,
 * then claimBatch of SERVER_COST_BATCH (50) and one bulk completion of those jobs, until none is left;
 * as the daemon's settler does, the claim events go out with the completion events in one insert.
 * The store code (this checkout's) is the same for both, so the client sends the same commands in the
 * same batches; the figure is the server's user+system CPU over that phase, from /proc.
 * Settings: SERVER_COST_ROUNDS (3). Prints one JSON document (progress on stderr).
 *
 *   SERVER_COST_PROFILE=1 node --import tsx bench/serverCost.ts
 *
 * profiles this checkout's server instead (one run, `node --cpu-prof`) and prints its top frames
 * (SERVER_COST_TOP, 30); the profile covers the whole process life, the enqueue included.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as store from '../src/store/index.js';
import { ROOT, startEmbeddedProcess } from './lib/jobd.js';
import { buildsFromEnv, cpuSeconds, interleaved, median, serverLauncher } from './lib/serverProcess.js';
import { formatGroup, groupsFrom, summarise } from './lib/cpuProfile.js';
import { intSetting, log, round } from './lib/stats.js';
import type { JobEventDoc } from '../src/types.js';

const JOBS = intSetting('SERVER_COST_JOBS', 5000);
const ROUNDS = intSetting('SERVER_COST_ROUNDS', 3);
const BATCH = intSetting('SERVER_COST_BATCH', 50);

async function oneRun(
  dist: string,
  nodeArgs: string[] = [],
): Promise<{ serverCpuPer1000: number; jobs: number }> {
  const server = await startEmbeddedProcess({ bin: serverLauncher(dist), nodeArgs });
  const s = await store.openStore({
    mongoUri: server.uri,
    database: `jobd_server_cost_${randomBytes(3).toString('hex')}`,
    appName: 'jobd-bench server-cost',
  });
  try {
    await store.ensureIndexes(s);
    const defaults = { priority: 5, maxAttempts: 3, timeoutMs: 60_000 };
    for (let i = 0; i < JOBS; i += 1000) {
      const now = new Date();
      const batch = Array.from({ length: Math.min(1000, JOBS - i) }, () =>
        store.resolveNewJob('noop', null, {}, defaults, now),
      );
      await store.enqueueMany(s, batch, now);
    }
    const watcher = store.watchClaimable(s, { onChange: () => {}, onError: () => {} });
    // Lets the stream open before the measured phase.
    await new Promise((r) => setTimeout(r, 500));
    const cpu0 = cpuSeconds(server.pid);
    let done = 0;
    for (;;) {
      const now = new Date();
      let claimEvents: JobEventDoc[] = [];
      const claimed = await store.claimBatch(s, {
        owner: 'bench',
        leaseMs: 60_000,
        now,
        types: ['noop'],
        limit: BATCH,
        eventSink: (events) => (claimEvents = events),
      });
      if (claimed.length === 0) break;
      const res = await store.settleManyIfRunning(
        s,
        claimed.map((j) => ({
          kind: 'complete' as const,
          jobId: j._id,
          token: j.lease!.token,
          attempt: j.attempts,
          seq: (j as { seq?: number }).seq,
          result: null,
        })),
        { owner: 'bench', now: new Date(), errorHistory: 5 },
        () => claimEvents,
      );
      done += res.landed.length;
    }
    const cpu = cpuSeconds(server.pid) - cpu0;
    await watcher.close();
    return { serverCpuPer1000: round((cpu * 1000) / Math.max(1, done), 3), jobs: done };
  } finally {
    await s.client.close();
    await server.close();
  }
}

async function profile(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'jobd-server-cost-prof-'));
  const { serverCpuPer1000, jobs } = await oneRun(join(ROOT, 'dist'), [
    '--cpu-prof',
    `--cpu-prof-dir=${dir}`,
  ]);
  log(
    `profiled: server ${serverCpuPer1000} CPU-s per 1,000 jobs (${jobs} jobs); load ${loadavg()
      .map((v) => round(v))
      .join(' ')}`,
  );
  const groups = groupsFrom([dir]).map((g) => summarise(g.name, g.files, intSetting('SERVER_COST_TOP', 30)));
  process.stdout.write(`${groups.map(formatGroup).join('\n\n')}\n\nprofiles: ${dir}\n`);
}

async function main(): Promise<void> {
  if (process.env.SERVER_COST_PROFILE) return profile();
  const builds = buildsFromEnv(ROOT);
  const load0 = loadavg();
  const runs = await interleaved(builds, ROUNDS, async (b, r) => {
    const { serverCpuPer1000, jobs } = await oneRun(b.dist);
    log(`round ${r + 1} ${b.name}: server ${serverCpuPer1000} CPU-s per 1,000 jobs (${jobs} jobs)`);
    return serverCpuPer1000;
  });
  const out = {
    bench: 'embedded server CPU-s per 1,000 jobs on the daemon write path (claimBatch + bulk completion)',
    jobs: JOBS,
    batch: BATCH,
    builds: Object.fromEntries(builds.map((b) => [b.name, b.dist])),
    runs,
    median: { base: median(runs.base), this: median(runs.this) },
    ratio: round(median(runs.this) / median(runs.base), 3),
    loadAvg: { start: load0.map((v) => round(v)), end: loadavg().map((v) => round(v)) },
  };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
