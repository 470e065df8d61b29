/**
 * What the first start of a new version costs when the job indexes changed definition: the embedded
 * server (its own process, in memory) holds BENCH_REBUILD_JOBS (1,000,000) jobs, most of them
 * finished, with the older definitions of the changed indexes (BENCH_REBUILD_OLD: a JSON array of
 * index specs; default: the full `cleanup` index and `type_state`, as before they changed); then
 * ensureIndexes runs as a daemon's start does. Prints ONE JSON document: the start's wall seconds
 * and the server's CPU seconds, a second start (nothing to do) likewise, the server's RSS.
 *
 *   node --import tsx bench/indexRebuild.ts                  this checkout's dist
 *   BENCH_DIST=/path/dist node --import tsx bench/indexRebuild.ts
 */
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Document } from 'mongodb';
import { DIST, loadJobd, startEmbeddedProcess } from './lib/jobd.js';
import { intSetting, log, round } from './lib/stats.js';

const JOBS = intSetting('BENCH_REBUILD_JOBS', 1_000_000);
/** One job in this many is still queued; the others completed (or failed, one in 50). */
const QUEUED_EVERY = 20;
const OLD: { key: Document; name: string }[] = process.env.BENCH_REBUILD_OLD
  ? (JSON.parse(process.env.BENCH_REBUILD_OLD) as { key: Document; name: string }[])
  : [
      {
        key: { state: 1, finishedAt: 1, _id: 1, type: 1, startedAt: 1, createdAt: 1, attempts: 1 },
        name: 'cleanup',
      },
      { key: { type: 1, state: 1 }, name: 'type_state' },
    ];

function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? round(Number(m[1]) / 1024, 0) : 0;
}

async function main(): Promise<void> {
  const jobd = await loadJobd();
  const server = await startEmbeddedProcess();
  const store = await jobd.store.openStore({ mongoUri: server.uri, database: 'rebuild', appName: 'bench' });
  try {
    const t0 = Date.UTC(2026, 0, 1);
    const chunk = 10_000;
    for (let i = 0; i < JOBS; i += chunk) {
      const docs = [];
      for (let k = i; k < Math.min(JOBS, i + chunk); k++) {
        const created = new Date(t0 + k * 10);
        const doc = jobd.store.newJobDoc(
          jobd.store.resolveNewJob(
            `type${k % 8}`,
            { k },
            {},
            { priority: 5, maxAttempts: 3, timeoutMs: 60_000 },
            created,
          ),
          created,
        ) as Document;
        if (k % QUEUED_EVERY !== 0) {
          const started = new Date(created.getTime() + 1_000);
          Object.assign(doc, {
            state: k % 50 === 1 ? 'failed' : 'completed',
            attempts: 1,
            startedAt: started,
            finishedAt: new Date(started.getTime() + 2_000),
            updatedAt: new Date(started.getTime() + 2_000),
            result: null,
            seq: 3,
          });
        }
        docs.push(doc);
      }
      await store.jobs.insertMany(docs as never[], { ordered: false });
      if ((i / chunk) % 20 === 0) log(`inserted ${i + docs.length} jobs`);
    }
    for (const old of OLD) {
      await store.jobs.dropIndex(old.name).catch(() => undefined);
      await store.jobs.createIndex(old.key, { name: old.name });
    }
    const before = (await store.jobs.listIndexes().toArray()).map((i) => i.name as string);
    const rssBefore = rssMb(server.pid);
    const measure = async (): Promise<{ seconds: number; serverCpuSeconds: number }> => {
      const cpu = cpuSeconds(server.pid);
      const t = performance.now();
      await jobd.store.ensureIndexes(store);
      return {
        seconds: round((performance.now() - t) / 1000, 2),
        serverCpuSeconds: round(cpuSeconds(server.pid) - cpu, 2),
      };
    };
    const loadStart = loadavg().map((v) => round(v));
    const first = await measure();
    const second = await measure();
    const after = (await store.jobs.listIndexes().toArray()).map((i) => i.name as string);
    process.stdout.write(
      `${JSON.stringify(
        {
          bench: 'first start after an index definition changed: ensureIndexes on the embedded server',
          dist: DIST,
          jobs: JOBS,
          finishedJobs: JOBS - Math.ceil(JOBS / QUEUED_EVERY),
          oldDefinitions: OLD.map((o) => o.name),
          indexesBefore: before,
          indexesAfter: after,
          firstStart: first,
          secondStart: second,
          serverRssMb: { before: rssBefore, after: rssMb(server.pid) },
          loadAvg: { start: loadStart, end: loadavg().map((v) => round(v)) },
        },
        null,
        2,
      )}\n`,
    );
  } finally {
    await store.close();
    await server.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
