/**
 * Embedded server throughput over loopback, through the official driver.
 *
 *   npm run bench:embedded                       the per-operation figures (below) and the suite
 *   node --import tsx bench/embedded.ts --ops    the per-operation figures only
 *
 * Per operation (--ops): the standalone server (bin/jobd-embedded, with a data directory, as jobd
 * runs it) in its own process serves a jobs collection carrying jobd's indexes: (a) findOne by _id,
 * (b) updateOne by _id with $set, (c) deleteMany by a filter on an indexed field (documents/s),
 * (d) insertMany of small documents (documents/s), (e) claims (findOneAndUpdate sorted on the claim
 * index). EMBEDDED_BENCH_SERVERS=name=path/to/bin/jobd-embedded,... compares builds: every round runs
 * each server once, in turn (A B A B), EMBEDDED_BENCH_ROUNDS times (2); the medians are printed per
 * server. EMBEDDED_BENCH_PROFILE_DIR=dir runs the servers under `node --cpu-prof` into dir/<name>.
 *
 * The suite:
 * insertOne, find by _id, and findOneAndUpdate claims on an indexed queue of 1,000 and 100,000 jobs;
 * and the daemon's batch write path in documents per second: batch claims (find ids, updateMany by
 * ids, read back by lease token), heartbeats, bulkWrite of guarded updateOnes, insertMany of 1,000
 * documents per call and of 20,000 in one call; and the time to insert and read back one 15 MiB
 * document (a message that reaches the server in hundreds of socket chunks).
 * Prints JSON (ops/s and docs/s; milliseconds for the 15 MiB document). Not part of `npm test`.
 */
import { MongoClient, type Collection, type Document, type ObjectId } from 'mongodb';
import { startEmbeddedServer } from '../src/embedded/index.js';
import { opsMain } from './lib/embeddedOps.js';

async function rate(ops: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  const started = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) await fn(i);
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  return Math.round(ops / secs);
}

async function fillQueue(coll: Collection<Document>, n: number, now: Date): Promise<void> {
  await coll.createIndex({ state: 1, priority: 1, runAt: 1, _id: 1 });
  const batch = 10_000;
  for (let start = 0; start < n; start += batch) {
    const docs: Document[] = [];
    for (let i = start; i < Math.min(n, start + batch); i++) {
      docs.push({
        state: i % 10 === 0 ? 'retrying' : 'queued',
        priority: i % 5,
        runAt: new Date(now.getTime() - (i % 1000) * 1000),
        type: i % 3 === 0 ? 'email' : 'report',
        attempts: 0,
        input: { n: i },
      });
    }
    await coll.insertMany(docs);
  }
}

async function claims(coll: Collection<Document>, ops: number, now: Date): Promise<number> {
  return rate(ops, () =>
    coll.findOneAndUpdate(
      { state: { $in: ['queued', 'retrying'] }, runAt: { $lte: now }, type: { $nin: ['never'] } },
      { $set: { state: 'running', leaseToken: 'bench' }, $inc: { attempts: 1 } },
      { sort: { priority: 1, runAt: 1, _id: 1 }, returnDocument: 'after' },
    ),
  );
}

async function docsRate(fn: () => Promise<number>): Promise<number> {
  const started = process.hrtime.bigint();
  const docs = await fn();
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  return Math.round(docs / secs);
}

const CLAIM_FILTER = (now: Date): Document => ({
  state: { $in: ['queued', 'retrying'] },
  runAt: { $lte: now },
});
const CLAIM_SORT = { priority: 1, runAt: 1, _id: 1 } as const;

/** The daemon's batch claim: candidate ids, one guarded updateMany, read back by lease token. */
async function batchClaims(
  coll: Collection<Document>,
  rounds: number,
  batch: number,
  now: Date,
): Promise<number> {
  let claimed = 0;
  for (let r = 0; r < rounds; r++) {
    const ids = (
      await coll.find(CLAIM_FILTER(now), { sort: CLAIM_SORT, limit: batch, projection: { _id: 1 } }).toArray()
    ).map((d) => d._id);
    const token = `lease-${r}`;
    await coll.updateMany(
      { _id: { $in: ids }, state: { $in: ['queued', 'retrying'] } },
      {
        $set: { state: 'running', 'lease.token': token, 'lease.expiresAt': new Date(now.getTime() + 60_000) },
        $inc: { attempts: 1 },
      },
    );
    claimed += (
      await coll
        .find({ _id: { $in: ids }, state: 'running', 'lease.token': token }, { sort: CLAIM_SORT })
        .toArray()
    ).length;
  }
  return claimed;
}

async function writePath(db: ReturnType<MongoClient['db']>, now: Date): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const jobs = db.collection('jobs_write_path');
  await jobs.createIndex({ state: 1, priority: 1, runAt: 1, _id: 1 });
  await jobs.createIndex({ 'lease.token': 1 }, { sparse: true });
  const make = (i: number): Document => ({
    state: 'queued',
    priority: i % 5,
    runAt: new Date(now.getTime() - (i % 1000)),
    type: 'report',
    attempts: 0,
    input: { n: i },
  });
  out.insertMany_20000_in_one_call_docsPerSec = await docsRate(async () => {
    await jobs.insertMany(Array.from({ length: 20_000 }, (_, i) => make(i)));
    return 20_000;
  });
  const events = db.collection('job_events_write_path');
  out.insertMany_1000_per_call_docsPerSec = await docsRate(async () => {
    for (let c = 0; c < 20; c++) {
      await events.insertMany(
        Array.from({ length: 1000 }, (_, i) => ({
          jobId: c * 1000 + i,
          kind: 'progress',
          at: now,
          data: { pct: i % 100 },
        })),
        { ordered: false },
      );
    }
    return 20_000;
  });
  out.batchClaim_50_docsPerSec = await docsRate(() => batchClaims(jobs, 100, 50, now));
  const running = await jobs
    .find({ state: 'running' }, { projection: { _id: 1, 'lease.token': 1 } })
    .toArray();
  const byToken = new Map<string, ObjectId[]>();
  for (const d of running) {
    const token = (d.lease as { token: string }).token;
    byToken.set(token, [...(byToken.get(token) ?? []), d._id as ObjectId]);
  }
  out.heartbeat_updateMany_by_ids_docsPerSec = await docsRate(async () => {
    let n = 0;
    for (const [token, ids] of byToken) {
      const r = await jobs.updateMany(
        { _id: { $in: ids }, 'lease.token': token },
        { $set: { 'lease.expiresAt': new Date(now.getTime() + 120_000) } },
      );
      n += r.matchedCount;
    }
    return n;
  });
  out.bulkWrite_guarded_updateOne_docsPerSec = await docsRate(async () => {
    let n = 0;
    for (const [token, ids] of byToken) {
      const r = await jobs.bulkWrite(
        ids.map((id) => ({
          updateOne: {
            filter: { _id: id, state: 'running', 'lease.token': token },
            update: { $set: { state: 'completed', output: { ok: true }, finishedAt: now } },
          },
        })),
        { ordered: false },
      );
      n += r.modifiedCount;
    }
    return n;
  });
  return out;
}

/** Milliseconds per insertOne and per findOne of a 15 MiB document (the median of a few). */
async function largeDocuments(db: ReturnType<MongoClient['db']>): Promise<Record<string, number>> {
  const coll = db.collection('large');
  const payload = 'x'.repeat(15 * 1024 * 1024);
  const insertMs: number[] = [];
  const findMs: number[] = [];
  for (let i = 0; i < 7; i++) {
    let started = process.hrtime.bigint();
    await coll.insertOne({ _id: i, payload } as Document);
    insertMs.push(Number(process.hrtime.bigint() - started) / 1e6);
    started = process.hrtime.bigint();
    await coll.findOne({ _id: i } as Document);
    findMs.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  await coll.drop();
  const median = (xs: number[]): number =>
    Math.round([...xs].sort((a, b) => a - b)[xs.length >> 1] as number);
  return { insertOne_15MiB_ms: median(insertMs), findOne_15MiB_ms: median(findMs) };
}

async function main(): Promise<void> {
  await opsMain();
  if (process.argv.includes('--ops')) return;
  const server = await startEmbeddedServer({ port: 0 });
  const client = new MongoClient(server.uri);
  await client.connect();
  const db = client.db('bench_embedded');
  await db.dropDatabase();
  const results: Record<string, unknown> = { server: 'jobd-embedded (in memory)', node: process.version };

  const plain = db.collection('plain');
  results.insertOne = await rate(5000, (i) => plain.insertOne({ i, payload: 'x'.repeat(100) }));
  const ids = (await plain.find({}, { projection: { _id: 1 } }).toArray()).map((d) => d._id);
  results.findById = await rate(5000, (i) => plain.findOne({ _id: ids[i % ids.length] }));

  const now = new Date();
  for (const size of [1_000, 100_000]) {
    const coll = db.collection(`queue_${size}`);
    await fillQueue(coll, size, now);
    results[`claim_${size}`] = await claims(coll, 500, now);
    results[`batchClaim_50_from_${size}_docsPerSec`] = await docsRate(() => batchClaims(coll, 10, 50, now));
  }
  Object.assign(results, await writePath(db, now));
  const milliseconds = await largeDocuments(db);
  console.log(JSON.stringify({ opsPerSecond: results, milliseconds }, null, 2));
  await client.close();
  await server.close();
}

await main();
