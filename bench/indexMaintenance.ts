/**
 * The embedded server's index maintenance for jobd's write path, in process, without the wire: a jobs
 * collection with jobd's indexes, SERVER_INDEX_JOBS (20000) queued jobs, then each job claimed and
 * completed (Collection.replace, as an update does) in batches of 50, plus 100 event documents
 * inserted per batch into a job_events collection. Prints CPU microseconds per job (process.cpuUsage).
 *
 *   SERVER_INDEX_BASE=<dist> node --import tsx bench/indexMaintenance.ts
 *
 * Both builds (SERVER_INDEX_BASE and SERVER_INDEX_THIS, default this checkout's dist) run in one
 * process, alternating; the build loaded first tends to run faster (its heap is laid out first), and on
 * a loaded machine rounds vary by 20%: bench/indexReplace.ts, one build per process, is steadier.
 * Settings: SERVER_INDEX_JOBS (20000), SERVER_INDEX_ROUNDS (5).
 */
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ObjectId, type Document } from 'bson';
import { JOB_INDEXES } from '../src/store/indexes.js';
import { ROOT } from './lib/jobd.js';
import { intSetting, round } from './lib/stats.js';

const JOBS = intSetting('SERVER_INDEX_JOBS', 20_000);
const ROUNDS = intSetting('SERVER_INDEX_ROUNDS', 5);

interface CollectionLike {
  insert(doc: Document): void;
  replace(a: Document, b: Document): void;
  addIndex(spec: Document): void;
}
type CollectionClass = new (db: string, name: string) => CollectionLike;

async function loadCollection(dist: string): Promise<CollectionClass> {
  const mod = (await import(pathToFileURL(join(dist, 'embedded', 'collection.js')).href)) as {
    Collection: CollectionClass;
  };
  return mod.Collection;
}

function oneRun(Collection: CollectionClass): number {
  const jobs = new Collection('b', 'jobs');
  for (const spec of JOB_INDEXES) jobs.addIndex({ ...spec, v: 2 } as Document);
  const events = new Collection('b', 'job_events');
  events.addIndex({ v: 2, key: { jobId: 1, at: 1 }, name: 'job_at' });
  const t0 = Date.now() - 60_000;
  const docs: Document[] = [];
  for (let i = 0; i < JOBS; i++) {
    const at = new Date(t0 + i);
    const doc: Document = {
      _id: randomBytes(12).toString('hex'),
      type: 'noop',
      params: null,
      priority: 5,
      runAt: at,
      maxAttempts: 3,
      timeoutMs: 60_000,
      state: 'queued',
      attempts: 0,
      createdAt: at,
      updatedAt: at,
      seq: 0,
    };
    jobs.insert(doc);
    docs.push(doc);
  }
  const start = process.cpuUsage();
  for (let b = 0; b < docs.length; b += 50) {
    const now = new Date();
    const batch = docs.slice(b, b + 50);
    const claimed = batch.map((d) => {
      const c: Document = {
        ...d,
        state: 'running',
        lease: { owner: 'bench', token: 'tok' + b, expiresAt: new Date(now.getTime() + 60_000) },
        startedAt: now,
        updatedAt: now,
        progress: null,
        settledToken: null,
        attempts: (d.attempts as number) + 1,
        seq: (d.seq as number) + 1,
      };
      jobs.replace(d, c);
      return c;
    });
    const evs: Document[] = [];
    for (const c of claimed) {
      evs.push({ _id: new ObjectId(), jobId: c._id, at: now, kind: 'claimed', attempt: c.attempts });
      const done: Document = { ...c, state: 'completed', finishedAt: now, updatedAt: now, result: null };
      delete done.lease;
      jobs.replace(c, done);
      evs.push({ _id: new ObjectId(), jobId: c._id, at: now, kind: 'completed', attempt: c.attempts });
    }
    for (const e of evs) events.insert(e);
  }
  const used = process.cpuUsage(start);
  return (used.user + used.system) / JOBS;
}

async function main(): Promise<void> {
  const builds = [
    { name: 'base', dist: resolve(process.env.SERVER_INDEX_BASE ?? join(ROOT, 'dist')) },
    { name: 'this', dist: resolve(process.env.SERVER_INDEX_THIS ?? join(ROOT, 'dist')) },
  ];
  const classes = await Promise.all(builds.map((b) => loadCollection(b.dist)));
  const load0 = loadavg();
  const runs: Record<string, number[]> = { base: [], this: [] };
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? [0, 1] : [1, 0];
    for (const i of order) runs[builds[i]!.name]!.push(round(oneRun(classes[i]!), 2));
  }
  const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
  process.stdout.write(
    `${JSON.stringify(
      {
        bench: 'index maintenance CPU microseconds per job (claim + completion replace, 2 event inserts)',
        jobs: JOBS,
        builds: Object.fromEntries(builds.map((b) => [b.name, b.dist])),
        runs,
        median: { base: median(runs.base!), this: median(runs.this!) },
      min: { base: Math.min(...runs.base!), this: Math.min(...runs.this!) },
        ratio: round(median(runs.this!) / median(runs.base!), 3),
        loadAvg: { start: load0.map((v) => round(v)), end: loadavg().map((v) => round(v)) },
      },
      null,
      2,
    )}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
