/**
 * Embedded server throughput over loopback, through the official driver:
 * insertOne, find by _id, and findOneAndUpdate claims on an indexed queue of 1,000 and 100,000 jobs.
 * Prints JSON (ops/s). Not part of `npm test`.
 */
import { MongoClient, type Collection, type Document } from 'mongodb';
import { startEmbeddedServer } from '../src/embedded/index.js';

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

async function main(): Promise<void> {
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
  }
  console.log(JSON.stringify({ opsPerSecond: results }, null, 2));
  await client.close();
  await server.close();
}

await main();
