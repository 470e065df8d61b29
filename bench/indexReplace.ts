/**
 * The embedded server's Collection.replace for a job's claim, in one build, in process: jobd's indexes,
 * SERVER_REPLACE_JOBS (20000) queued jobs, then each job claimed and put back, timed in chunks of 200
 * replaces. On a loaded machine the low end of the chunks is the steady figure (preemption only adds),
 * so min and p10 are printed beside the median. Run two builds one after the other, several times:
 *
 *   node --import tsx bench/indexReplace.ts [dist]        (default: this checkout's dist)
 *
 * SERVER_REPLACE_STEP=complete: the jobs are running, and each is completed and put back instead (the
 * completion's $set: state, lease, finishedAt, updatedAt, result, settledToken, seq). The indexes are
 * this checkout's (src/store/indexes.ts): run it from two checkouts with one dist to compare index sets.
 */
import { join, resolve } from 'node:path';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import type { Document } from 'bson';
import { JOB_INDEXES } from '../src/store/indexes.js';
import { ROOT } from './lib/jobd.js';
import { intSetting, round } from './lib/stats.js';

const JOBS = intSetting('SERVER_REPLACE_JOBS', 20_000);
const CHUNK = 200;
const CHUNKS = 300;
const STEP = process.env.SERVER_REPLACE_STEP ?? 'claim';
if (STEP !== 'claim' && STEP !== 'complete') {
  process.stderr.write(`SERVER_REPLACE_STEP = '${STEP}' is not allowed: must be claim or complete\n`);
  process.exit(2);
}

interface CollectionLike {
  insert(doc: Document): void;
  replace(a: Document, b: Document): void;
  addIndex(spec: Document): void;
}

async function main(): Promise<void> {
  const dist = resolve(process.argv[2] ?? join(ROOT, 'dist'));
  const { Collection } = (await import(pathToFileURL(join(dist, 'embedded', 'collection.js')).href)) as {
    Collection: new (db: string, name: string) => CollectionLike;
  };
  const jobs = new Collection('b', 'jobs');
  for (const spec of JOB_INDEXES) jobs.addIndex({ ...spec, v: 2 } as Document);
  const t0 = 1_700_000_000_000;
  const queued: Document[] = [];
  for (let i = 0; i < JOBS; i++) {
    const at = new Date(t0 + i);
    const doc: Document = {
      _id: (1e15 + i * 7919).toString(16).padStart(24, '0'),
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
    queued.push(doc);
  }
  const now = new Date(t0 + 1e6);
  const running = queued.map((d) => ({
    ...d,
    state: 'running',
    lease: { owner: 'bench', token: 'tok', expiresAt: new Date(now.getTime() + 60_000) },
    startedAt: now,
    updatedAt: now,
    progress: null,
    settledToken: null,
    attempts: (d.attempts as number) + 1,
    seq: (d.seq as number) + 1,
  }));
  // complete: running jobs, each completed and put back (the pair replaces what `queued` and `running` were).
  const from = STEP === 'claim' ? queued : running;
  const to =
    STEP === 'claim'
      ? running
      : running.map((d) => ({
          ...d,
          state: 'completed',
          lease: null,
          settledToken: 'tok',
          finishedAt: new Date(now.getTime() + 1000),
          updatedAt: new Date(now.getTime() + 1000),
          result: null,
          seq: (d.seq as number) + 1,
        }));
  if (STEP === 'complete') for (let i = 0; i < JOBS; i++) jobs.replace(queued[i]!, running[i]!);
  const current = from.slice();
  const perReplace: number[] = [];
  for (let c = 0; c < CHUNKS; c++) {
    const start = (c * CHUNK) % JOBS;
    const t = performance.now();
    for (let i = start; i < start + CHUNK; i++) {
      const next = current[i] === from[i] ? to[i]! : from[i]!;
      jobs.replace(current[i]!, next);
      current[i] = next;
    }
    perReplace.push(((performance.now() - t) * 1000) / CHUNK);
  }
  perReplace.sort((a, b) => a - b);
  const at = (q: number): number => round(perReplace[Math.floor(q * (perReplace.length - 1))]!, 3);
  process.stdout.write(
    `${JSON.stringify({
      bench: `embedded Collection.replace of a job (${STEP} and back), microseconds per replace`,
      dist,
      jobs: JOBS,
      min: at(0),
      p10: at(0.1),
      median: at(0.5),
      loadAvg: loadavg().map((v) => round(v)),
    })}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
