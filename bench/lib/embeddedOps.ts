/**
 * bench/embedded.ts --ops: per-operation rates of the standalone embedded server, one process per
 * build, alternated round by round (see bench/embedded.ts).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { MongoClient, ObjectId, type Collection, type Document } from 'mongodb';
import { JOB_INDEXES } from '../../src/store/indexes.js';
import { ROOT, startEmbeddedProcess } from './jobd.js';

type ServerProcess = Awaited<ReturnType<typeof startEmbeddedProcess>>;

function startServer(bin: string, dataDir: string, profileDir: string | undefined): Promise<ServerProcess> {
  return startEmbeddedProcess({
    bin,
    args: ['--data-dir', dataDir],
    nodeArgs: profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [],
  });
}

const N_JOBS = 10_000;

function job(i: number, now: Date): Document {
  return {
    _id: new ObjectId().toHexString(),
    type: i % 3 === 0 ? 'email' : 'report',
    state: 'queued',
    priority: i % 5,
    runAt: new Date(now.getTime() - (i % 1000) * 1000),
    createdAt: now,
    updatedAt: now,
    attempts: 0,
    maxAttempts: 3,
    seq: 0,
    input: { n: i, path: `/data/set-${i}` },
  };
}

/** The server's CPU time (user + system) in milliseconds, at the clock tick's resolution (10 ms). */
function serverCpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

/**
 * Runs one phase; records its rate under `name`_perSec and the server's CPU per operation (or per
 * document) under `name`_serverCpuUs: on a loaded machine the rate moves with the load, the CPU less.
 */
async function timed(
  out: Record<string, number>,
  name: string,
  pid: number,
  count: number,
  fn: () => Promise<unknown>,
): Promise<void> {
  const cpu0 = serverCpuMs(pid);
  const started = process.hrtime.bigint();
  await fn();
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  out[`${name}_perSec`] = Math.round(count / secs);
  out[`${name}_serverCpuUs`] = Math.round(((serverCpuMs(pid) - cpu0) * 1000) / count);
}

/** Which of a-e to run (EMBEDDED_BENCH_OPS, default all): one alone gives a profile of it. */
const SELECTED = new Set((process.env.EMBEDDED_BENCH_OPS ?? 'a,b,c,d,e').split(','));

async function opsOnce(uri: string, pid: number): Promise<Record<string, number>> {
  const client = new MongoClient(uri);
  await client.connect();
  try {
    const db = client.db('bench_ops');
    const jobs: Collection<Document> = db.collection('jobs');
    await jobs.createIndexes(JOB_INDEXES);
    const now = new Date();
    const docs = Array.from({ length: N_JOBS }, (_, i) => job(i, now));
    const out: Record<string, number> = {};
    // (d) insertMany of small documents, 1,000 a call, into the indexed jobs collection.
    const setup: Record<string, number> = {};
    await timed(SELECTED.has('d') ? out : setup, 'd_insertMany_docs', pid, N_JOBS, async () => {
      for (let s = 0; s < N_JOBS; s += 1000) await jobs.insertMany(docs.slice(s, s + 1000));
    });
    const ids = docs.map((d) => d._id as string);
    const reads = 4000;
    if (SELECTED.has('a'))
      await timed(out, 'a_findOneById', pid, reads, async () => {
        for (let i = 0; i < reads; i++) await jobs.findOne({ _id: ids[(i * 7919) % ids.length] } as Document);
      });
    if (SELECTED.has('b'))
      await timed(out, 'b_updateOneById', pid, reads, async () => {
        for (let i = 0; i < reads; i++)
          await jobs.updateOne({ _id: ids[(i * 7919) % ids.length] } as Document, {
            $set: { updatedAt: new Date(), note: i },
          });
      });
    // (e) claims: findOneAndUpdate sorted on the claim index.
    const claims = 2000;
    if (SELECTED.has('e'))
      await timed(out, 'e_claim', pid, claims, async () => {
        for (let i = 0; i < claims; i++)
          await jobs.findOneAndUpdate(
            {
              state: { $in: ['queued', 'retrying'] },
              type: { $in: ['email', 'report'] },
              runAt: { $lte: now },
            },
            {
              $set: { state: 'running', 'lease.token': `t${i}`, 'lease.expiresAt': now },
              $inc: { attempts: 1, seq: 1 },
            },
            { sort: { priority: 1, runAt: 1, _id: 1 }, returnDocument: 'before' },
          );
      });
    // (c) deleteMany by a filter on the cleanup index, 1,000 finished jobs a call.
    if (SELECTED.has('c')) {
      const finished: Collection<Document> = db.collection('finished');
      await finished.createIndexes(JOB_INDEXES);
      await finished.insertMany(
        docs.map((d, i) => ({
          ...d,
          state: 'completed',
          finishedAt: new Date(now.getTime() + Math.floor(i / 1000)),
        })),
      );
      let deleted = 0;
      await timed(out, 'c_deleteMany_docs', pid, N_JOBS, async () => {
        for (let k = 0; k < N_JOBS / 1000; k++) {
          const before = new Date(now.getTime() + k);
          deleted += (await finished.deleteMany({ state: 'completed', finishedAt: { $lte: before } }))
            .deletedCount;
        }
      });
      if (deleted !== N_JOBS) throw new Error(`deleteMany removed ${deleted} of ${N_JOBS}`);
    }
    await db.dropDatabase();
    return out;
  } finally {
    await client.close();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : Math.round((s[s.length / 2 - 1]! + s[s.length / 2]!) / 2);
}

export async function opsMain(): Promise<void> {
  const spec = process.env.EMBEDDED_BENCH_SERVERS ?? `current=${join(ROOT, 'bin/jobd-embedded')}`;
  const servers = spec.split(',').map((entry) => {
    const [name, path] = entry.split('=') as [string, string | undefined];
    if (!name || !path) throw new Error(`EMBEDDED_BENCH_SERVERS entry '${entry}' must be name=path`);
    return { name, bin: resolve(path) };
  });
  const rounds = Number(process.env.EMBEDDED_BENCH_ROUNDS ?? 2);
  const profileRoot = process.env.EMBEDDED_BENCH_PROFILE_DIR;
  const runs: Record<string, Array<Record<string, number>>> = {};
  const loads: string[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const { name, bin } of servers) {
      const dataDir = mkdtempSync(join(tmpdir(), 'bench-embedded-ops-'));
      const profileDir = profileRoot ? join(profileRoot, name) : undefined;
      if (profileDir) mkdirSync(profileDir, { recursive: true });
      loads.push(
        loadavg()
          .map((l) => l.toFixed(2))
          .join(' '),
      );
      const server = await startServer(bin, dataDir, profileDir);
      try {
        (runs[name] ??= []).push(await opsOnce(server.uri, server.pid));
      } finally {
        await server.close();
        rmSync(dataDir, { recursive: true, force: true });
      }
    }
  }
  const medians: Record<string, Record<string, number>> = {};
  for (const [name, list] of Object.entries(runs)) {
    medians[name] = {};
    for (const key of Object.keys(list[0]!)) medians[name][key] = median(list.map((x) => x[key]!));
  }
  console.log(JSON.stringify({ perOperation: { medians, runs, loadavgAtEachRun: loads } }, null, 2));
}
