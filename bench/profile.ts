/**
 * CPU profiles of one jobd run of the peers workload, all three processes, then their top frames.
 *
 *   npm run bench:profile                                  20,000 no-op jobs at concurrency 32
 *   PROFILE_JOBS=2000 npm run bench:profile                a quick one
 *   PROFILE_MODE=inline npm run bench:profile              noop in the daemon: daemon and server only
 *
 * Settings: PROFILE_JOBS (20000), PROFILE_CONCURRENCY (32), PROFILE_TOP (25), PROFILE_MODE (pooled),
 * PROFILE_INTERVAL_US (1000, the sampling interval), PROFILE_DIR (.tmp/profiles/<time>).
 *
 * The embedded server (bin/jobd-embedded, in memory) and the daemon (bin/jobd) run with
 * `node --cpu-prof`; the pooled children get the same profiler through a preload in NODE_OPTIONS
 * (see lib/cpuProfilePreload.mjs). Every job is enqueued before the daemon starts. The profiles
 * are written when the processes exit, into <dir>/embedded, <dir>/daemon and <dir>/children;
 * the report (stdout, and <dir>/top.json) sums the children's profiles as one group.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type * as Api from '../src/index.js';
import { formatGroup, groupsFrom, summarise } from './lib/cpuProfile.js';
import { DIST, ROOT, startEmbeddedProcess } from './lib/jobd.js';
import { intSetting, log, round, sleep } from './lib/stats.js';

async function main(): Promise<void> {
  const jobs = intSetting('PROFILE_JOBS', 20_000);
  const concurrency = intSetting('PROFILE_CONCURRENCY', 32);
  const top = intSetting('PROFILE_TOP', 25);
  const intervalUs = intSetting('PROFILE_INTERVAL_US', 1000);
  const mode = process.env.PROFILE_MODE || 'pooled';
  if (mode !== 'pooled' && mode !== 'inline') {
    process.stderr.write(`PROFILE_MODE = '${mode}' is not allowed: must be pooled or inline\n`);
    process.exit(2);
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const dir = resolve(process.env.PROFILE_DIR ?? join(ROOT, '.tmp', 'profiles', stamp));
  const sub = (name: string): string => {
    mkdirSync(join(dir, name), { recursive: true });
    return join(dir, name);
  };
  const profArgs = (d: string): string[] => [
    '--cpu-prof',
    `--cpu-prof-dir=${d}`,
    `--cpu-prof-interval=${intervalUs}`,
  ];
  log(`profiles go to ${dir}`);

  const api = (await import(pathToFileURL(join(DIST, 'index.js')).href)) as typeof Api;
  const server = await startEmbeddedProcess({ nodeArgs: profArgs(sub('embedded')) });
  const database = `jobd_profile_${process.pid}`;
  const client = await api.JobdClient.connect({ mongoUri: server.uri, database, appName: 'jobd-profile' });
  const work = mkdtempSync(join(tmpdir(), 'jobd-profile-'));
  try {
    log(`enqueueing ${jobs} no-op jobs`);
    for (let i = 0; i < jobs; i += 1_000)
      await client.enqueueMany(Array.from({ length: Math.min(1_000, jobs - i) }, () => ({ type: 'noop' })));

    const settings = join(work, 'settings.json');
    writeFileSync(
      settings,
      JSON.stringify({
        mongoUri: server.uri,
        database,
        dataDir: work,
        logLevel: 'warn',
        worker: { concurrency },
        jobTypes: { noop: { mode } },
      }),
    );
    const preload = pathToFileURL(join(ROOT, 'bench', 'lib', 'cpuProfilePreload.mjs')).href;
    log(`bin/jobd at concurrency ${concurrency}, profiling it and its children`);
    const t0 = performance.now();
    const daemon = spawn(
      process.execPath,
      [...profArgs(sub('daemon')), join(ROOT, 'bin', 'jobd'), '--settings', settings],
      {
        cwd: work,
        stdio: ['ignore', 2, 'inherit'],
        env: {
          ...process.env,
          NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${preload}`.trim(),
          JOBD_BENCH_CPU_PROF_DIR: sub('children'),
          JOBD_BENCH_CPU_PROF_INTERVAL_US: String(intervalUs),
        },
      },
    );
    const exited = new Promise<number | null>((r) => daemon.once('exit', (code) => r(code)));
    // Done when no job is left unfinished: an indexed findOne every 250 ms, a negligible share of
    // the embedded server's profile (a count of the completed jobs would grow with them).
    const unfinished = api.JOB_STATES.filter((s) => !api.FINISHED_STATES.includes(s));
    const left = (): Promise<unknown> =>
      client.store.jobs.findOne({ state: { $in: unfinished } }, { projection: { _id: 1 } });
    while ((await left()) && daemon.exitCode === null) await sleep(250);
    const seconds = (performance.now() - t0) / 1000;
    daemon.kill('SIGTERM');
    const code = await exited;
    const completed = (await client.countByState({ type: 'noop' })).completed;
    if (completed < jobs)
      throw new Error(`bin/jobd exited (${code}) with ${completed}/${jobs} jobs completed`);
    log(
      `${jobs} jobs in ${round(seconds)} s (${round(jobs / seconds, 1)} jobs/s under the profiler; ` +
        `load ${loadavg()
          .map((v) => round(v))
          .join(' ')})`,
    );
    await client.store.db.dropDatabase();
  } finally {
    await client.close();
    await server.close();
    rmSync(work, { recursive: true, force: true });
  }

  const groups = groupsFrom([dir]).map((g) => summarise(g.name, g.files, top));
  writeFileSync(join(dir, 'top.json'), `${JSON.stringify(groups, null, 2)}\n`);
  process.stdout.write(`${groups.map(formatGroup).join('\n\n')}\n\nprofiles: ${dir}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(
    `bench:profile failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exitCode = 1;
});
