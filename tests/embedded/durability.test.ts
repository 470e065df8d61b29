/**
 * Durability of the standalone embedded server, over the wire with the official driver, across real
 * SIGKILLs of a real process: acknowledged writes survive, the data directory is locked, the log is
 * compacted, and a torn tail is dropped. Then real failures: a log append refused by the kernel
 * (RLIMIT_FSIZE), a compaction blocked by the file system, and graceful shutdown on signals.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, rmdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MongoClient, MongoServerError, type Collection, type Document } from 'mongodb';
import { currentLogPath } from '../../src/embedded/persistence.js';
import {
  killAllEmbeddedProcesses,
  spawnEmbeddedProcess,
  startEmbeddedProcess,
  type EmbeddedProcess,
} from '../helpers/embeddedProcess.js';

/** Documents with our own _id values (strings and numbers, not ObjectIds). */
type Doc = { _id: string | number } & Document;

function collection(client: MongoClient, db: string, name: string): Collection<Doc> {
  return client.db(db).collection<Doc>(name);
}

const dirs: string[] = [];
const clients: MongoClient[] = [];

function dataDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'jobd-durability-'));
  dirs.push(d);
  return d;
}

async function connect(server: EmbeddedProcess): Promise<MongoClient> {
  const client = new MongoClient(server.uri, { serverSelectionTimeoutMS: 5_000 });
  clients.push(client);
  await client.connect();
  return client;
}

async function closeClients(): Promise<void> {
  await Promise.all(clients.splice(0).map((c) => c.close(true).catch(() => {})));
}

afterEach(async () => {
  await closeClients();
  await killAllEmbeddedProcesses();
});

afterAll(() => {
  if (process.env.JOBD_KEEP_TEST_DB === '1') return;
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const byId = (a: Document, b: Document): number =>
  typeof a._id === 'number' && typeof b._id === 'number'
    ? a._id - b._id
    : String(a._id).localeCompare(String(b._id));

async function contents(client: MongoClient, db: string, name: string): Promise<Document[]> {
  const docs = await client.db(db).collection(name).find().toArray();
  return docs.sort(byId);
}

function dirBytes(dir: string): number {
  return readdirSync(dir).reduce(
    (sum, name) => sum + (statSync(join(dir, name), { throwIfNoEntry: false })?.size ?? 0),
    0,
  );
}

describe('embedded server durability (standalone process, SIGKILL)', () => {
  it('every acknowledged write, index and collection survives SIGKILL and restart on the same port', async () => {
    const dir = dataDir();
    const first = await startEmbeddedProcess({ dataDir: dir });
    const client = await connect(first);
    const app = client.db('app');
    const jobs = app.collection<Doc>('jobs');
    const events = app.collection<Doc>('events');
    const things = collection(client, 'other', 'things');

    await jobs.createIndex({ key: 1 }, { unique: true });
    await jobs.createIndex({ state: 1, runAt: 1 }, { partialFilterExpression: { state: 'queued' } });
    const expectedJobs = new Map<string, Document>();
    for (let i = 0; i < 50; i++) {
      const doc = {
        _id: `job-${String(i).padStart(3, '0')}`,
        key: `k${i}`,
        state: 'queued',
        runAt: new Date(1_700_000_000_000 + i),
        attempts: 0,
      };
      await jobs.insertOne(doc);
      expectedJobs.set(doc._id, doc);
    }
    // updates: operators, multi, replacement, upsert
    await jobs.updateMany({ _id: { $lt: 'job-010' } }, { $set: { state: 'running' }, $inc: { attempts: 1 } });
    for (let i = 0; i < 10; i++) {
      const d = expectedJobs.get(`job-00${i}`) as Document;
      d.state = 'running';
      d.attempts = 1;
    }
    await jobs.replaceOne(
      { _id: 'job-020' },
      { key: 'k20', state: 'done', output: { ok: true, list: [1, 2, 3] } },
    );
    expectedJobs.set('job-020', {
      _id: 'job-020',
      key: 'k20',
      state: 'done',
      output: { ok: true, list: [1, 2, 3] },
    });
    await jobs.updateOne({ _id: 'job-upserted' }, { $set: { key: 'kU', state: 'queued' } }, { upsert: true });
    expectedJobs.set('job-upserted', { _id: 'job-upserted', key: 'kU', state: 'queued' });
    // deletes
    await jobs.deleteOne({ _id: 'job-049' });
    await jobs.deleteMany({ _id: { $in: ['job-040', 'job-041'] } });
    for (const id of ['job-049', 'job-040', 'job-041']) expectedJobs.delete(id);
    // a rejected write changes nothing
    await expect(jobs.insertOne({ _id: 'dup', key: 'k1' })).rejects.toMatchObject({ code: 11000 });

    const evs = Array.from({ length: 300 }, (_, i) => ({ _id: i, payload: 'x'.repeat(i % 50) }));
    await events.insertMany(evs);
    await things.insertOne({ _id: 'only', nested: { deep: { value: 42 } } });
    await collection(client, 'scratch', 'gone').insertOne({ _id: 1 });
    await client.db('scratch').dropDatabase();

    const killed = await first.kill();
    expect(killed.signal).toBe('SIGKILL');

    const second = await startEmbeddedProcess({ dataDir: dir, port: first.port });
    expect(second.port).toBe(first.port);
    const after = await connect(second);
    expect(await contents(after, 'app', 'jobs')).toEqual([...expectedJobs.values()].sort(byId));
    expect(await contents(after, 'app', 'events')).toEqual(evs);
    expect(await contents(after, 'other', 'things')).toEqual([
      { _id: 'only', nested: { deep: { value: 42 } } },
    ]);
    const dbNames = (await after.db('admin').admin().listDatabases()).databases.map((d) => d.name);
    expect(dbNames).toEqual(expect.arrayContaining(['app', 'other']));
    expect(dbNames).not.toContain('scratch');

    const indexes = await collection(after, 'app', 'jobs').listIndexes().toArray();
    expect(indexes.find((ix) => ix.name === 'key_1')).toMatchObject({ key: { key: 1 }, unique: true });
    expect(indexes.find((ix) => ix.name === 'state_1_runAt_1')).toMatchObject({
      key: { state: 1, runAt: 1 },
      partialFilterExpression: { state: 'queued' },
    });
    const dup = await collection(after, 'app', 'jobs')
      .insertOne({ _id: 'dup2', key: 'k5' })
      .catch((e: unknown) => e);
    expect(dup).toBeInstanceOf(MongoServerError);
    expect(dup).toMatchObject({ code: 11000, keyValue: { key: 'k5' } });
  });

  it('writes acknowledged up to the moment of SIGKILL all survive; a multi-document insert replays whole or not at all', async () => {
    const dir = dataDir();
    const server = await startEmbeddedProcess({ dataDir: dir });
    const client = new MongoClient(server.uri, { serverSelectionTimeoutMS: 1_000, retryWrites: false });
    clients.push(client);
    await client.connect();
    const coll = collection(client, 'load', 'docs');

    const acknowledged = new Set<number>();
    const batches: number[][] = [];
    let killRequested: () => void = () => {};
    const killPoint = new Promise<void>((r) => (killRequested = r));
    let next = 0;
    // Four writers keep writes in flight; the kill lands while some are unanswered.
    const writer = async (): Promise<void> => {
      for (;;) {
        const id = next++;
        try {
          if (id % 10 === 0) {
            const ids = Array.from({ length: 200 }, (_, k) => 1_000_000 + id * 1000 + k);
            batches.push(ids);
            await coll.insertMany(ids.map((_id) => ({ _id, batch: id })));
          } else {
            await coll.insertOne({ _id: id, v: `value ${id}` });
          }
          acknowledged.add(id);
          if (acknowledged.size === 400) killRequested();
        } catch {
          return; // the server is gone
        }
      }
    };
    const writers = Promise.all([writer(), writer(), writer(), writer()]);
    await killPoint;
    await server.kill();
    await writers;
    await closeClients();

    const restarted = await startEmbeddedProcess({ dataDir: dir, port: server.port });
    const after = await connect(restarted);
    const present = new Set(
      (
        await collection(after, 'load', 'docs')
          .find({}, { projection: { _id: 1 } })
          .toArray()
      ).map((d) => d._id as number),
    );
    for (const id of acknowledged) {
      if (id % 10 === 0) {
        for (const member of batches.find((b) => b[0] === 1_000_000 + id * 1000) as number[])
          expect(present.has(member)).toBe(true);
      } else {
        expect(present.has(id), `acknowledged insert ${id}`).toBe(true);
      }
    }
    for (const batch of batches) {
      const found = batch.filter((id) => present.has(id)).length;
      expect([0, batch.length]).toContain(found);
    }
  });

  it('a second server on the same data directory is refused with a clear message while the first runs', async () => {
    const dir = dataDir();
    const first = await startEmbeddedProcess({ dataDir: dir });
    const second = spawnEmbeddedProcess({ dataDir: dir });
    const exit = await second.exited;
    expect(exit.code).toBe(4);
    expect(exit.output).toContain(dir);
    expect(exit.output).toContain(String(first.pid));
    expect(exit.output).toMatch(/locked/i);
    // the first is unaffected
    const client = await connect(first);
    await collection(client, 'x', 'y').insertOne({ _id: 1 });
    expect(await collection(client, 'x', 'y').countDocuments()).toBe(1);
  });

  it('compacts the log so the data directory stays bounded, and restarts from the compacted state', async () => {
    const dir = dataDir();
    const threshold = 64 * 1024;
    const server = await startEmbeddedProcess({
      dataDir: dir,
      args: ['--compact-threshold-bytes', String(threshold)],
    });
    const client = await connect(server);
    const coll = collection(client, 'app', 'counters');
    await coll.createIndex({ name: 1 }, { unique: true });
    await coll.insertMany(Array.from({ length: 20 }, (_, i) => ({ _id: i, name: `c${i}`, n: 0, pad: '' })));

    // 120 commands, each updating all 20 documents with ~1 KB of padding: about 2.5 MB of log without
    // compaction, for ~20 KB of live data.
    const pad = (round: number): string => 'p'.repeat(1000 + (round % 50));
    let largest = 0;
    for (let round = 0; round < 120; round++) {
      await coll.updateMany({}, { $inc: { n: 1 }, $set: { pad: pad(round) } });
      largest = Math.max(largest, dirBytes(dir));
    }
    // A compaction runs just after the reply of the write that made it due; any request answered after
    // that reply was read after the compaction finished.
    await client.db('admin').command({ ping: 1 });
    const snapshots = readdirSync(dir).filter((f) => f.startsWith('snapshot-'));
    expect(snapshots).toHaveLength(1);
    // several compactions happened, each replacing the previous generation
    expect(Number(/^snapshot-(\d+)\./.exec(snapshots[0] as string)?.[1])).toBeGreaterThan(2);
    // log below max(threshold, 2 × snapshot) plus one command's frame; snapshot about the live data
    expect(largest).toBeLessThan(4 * threshold);

    await server.kill();
    const restarted = await startEmbeddedProcess({ dataDir: dir, port: server.port });
    const after = await connect(restarted);
    const docs = await collection(after, 'app', 'counters').find().sort({ _id: 1 }).toArray();
    expect(docs).toHaveLength(20);
    for (const d of docs) {
      expect(d.n).toBe(120);
      expect(d.pad).toBe(pad(119));
    }
    await expect(
      collection(after, 'app', 'counters').insertOne({ _id: 'new', name: 'c3' }),
    ).rejects.toMatchObject({
      code: 11000,
    });
  });

  it('drops a torn tail at restart, says so, and keeps accepting durable writes', async () => {
    const dir = dataDir();
    const server = await startEmbeddedProcess({ dataDir: dir });
    const client = await connect(server);
    const coll = collection(client, 'app', 'jobs');
    await coll.insertMany([{ _id: 1 }, { _id: 2 }, { _id: 3 }]);
    await server.kill();
    await closeClients();

    const log = currentLogPath(dir) as string;
    const sizeBefore = statSync(log).size;
    appendFileSync(log, Buffer.from([0x2a, 0x00, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03]));

    const restarted = await startEmbeddedProcess({ dataDir: dir, port: server.port });
    // the store's recovery message, printed before the server listens (stderr may arrive after stdout)
    await restarted.waitForLine(/torn/i);
    const tornLines = restarted
      .output()
      .split('\n')
      .filter((l) => /torn/i.test(l));
    expect(tornLines).toHaveLength(1);
    expect(tornLines[0]).toContain(dir);
    expect(tornLines[0]).toContain('11 bytes');
    expect(statSync(log).size).toBe(sizeBefore);
    const after = await connect(restarted);
    expect(await contents(after, 'app', 'jobs')).toEqual([{ _id: 1 }, { _id: 2 }, { _id: 3 }]);
    await collection(after, 'app', 'jobs').insertOne({ _id: 4 });
    await restarted.kill();
    await closeClients();

    const third = await startEmbeddedProcess({ dataDir: dir, port: server.port });
    expect(third.output()).not.toMatch(/torn/i);
    const last = await connect(third);
    expect(await contents(last, 'app', 'jobs')).toEqual([{ _id: 1 }, { _id: 2 }, { _id: 3 }, { _id: 4 }]);
  });
});

describe('embedded server: failed writes, failed compactions and shutdown (standalone process)', () => {
  it('a write the log cannot take (EFBIG under RLIMIT_FSIZE) fails, is not applied, and fences further writes', async () => {
    const dir = dataDir();
    // Small commands fit under the limit; one command of ~300 KB does not, so its append fails in write(2).
    const server = await startEmbeddedProcess({ dataDir: dir, fileSizeLimitBytes: 256 * 1024 });
    const client = new MongoClient(server.uri, { serverSelectionTimeoutMS: 5_000, retryWrites: false });
    clients.push(client);
    await client.connect();
    const jobs = collection(client, 'app', 'jobs');
    await jobs.createIndex({ key: 1 }, { unique: true });
    await jobs.insertMany([
      { _id: 1, key: 'a', v: 0 },
      { _id: 2, key: 'b', v: 0 },
      { _id: 3, key: 'c', v: 0 },
    ]);
    const stream = jobs.watch([], { maxAwaitTimeMS: 200 });
    expect(await stream.tryNext()).toBeNull(); // opened before the failing write

    // Several effects in one command: three replaced documents, each with a change event.
    const failed = await jobs
      .updateMany({}, { $set: { v: 1, pad: 'x'.repeat(100_000) } })
      .catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(MongoServerError);
    expect((failed as MongoServerError).message).toMatch(/not applied.*EFBIG/s);

    // Memory shows none of it: documents, indexes and the change stream are as they were.
    expect(await contents(client, 'app', 'jobs')).toEqual([
      { _id: 1, key: 'a', v: 0 },
      { _id: 2, key: 'b', v: 0 },
      { _id: 3, key: 'c', v: 0 },
    ]);
    expect(await jobs.countDocuments({ key: 'b' })).toBe(1);
    expect(await stream.tryNext()).toBeNull();
    await stream.close();

    // Writes are refused from now on, small ones included; reads continue.
    const refused = await jobs.insertOne({ _id: 4, key: 'd' }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(MongoServerError);
    expect((refused as MongoServerError).message).toMatch(/writes are refused/);
    expect((refused as MongoServerError).message).toContain(dir);
    await expect(client.db('app').createCollection('other')).rejects.toThrow(/writes are refused/);
    expect(await jobs.countDocuments()).toBe(3);
    await closeClients();

    const exit = await server.stop('SIGTERM');
    expect(exit.code).toBe(1);
    expect(exit.output).toContain(`could not append to the durable log in ${dir}`);
    expect(exit.output).toMatch(/writes are refused and reads continue/);

    const restarted = await startEmbeddedProcess({ dataDir: dir });
    const after = await connect(restarted);
    expect(await contents(after, 'app', 'jobs')).toEqual([
      { _id: 1, key: 'a', v: 0 },
      { _id: 2, key: 'b', v: 0 },
      { _id: 3, key: 'c', v: 0 },
    ]);
    await collection(after, 'app', 'jobs').insertOne({ _id: 4, key: 'd' });
    expect(await collection(after, 'app', 'jobs').countDocuments()).toBe(4);
  });

  it('a failed compaction does not fail the write that triggered it; it is logged and retried later', async () => {
    const dir = dataDir();
    const server = await startEmbeddedProcess({
      dataDir: dir,
      args: ['--compact-threshold-bytes', String(16 * 1024)],
    });
    const client = await connect(server);
    const coll = collection(client, 'app', 'docs');
    // A directory where the next snapshot's temporary file must go: opening it for writing fails (EISDIR).
    const obstacle = join(dir, 'snapshot-1.jobd.tmp');
    mkdirSync(obstacle);

    let i = 0;
    const write = async (): Promise<void> => {
      await coll.insertOne({ _id: i++, pad: 'p'.repeat(4096) });
      await client.db('admin').command({ ping: 1 }); // answered after any compaction that write scheduled
    };
    while (!/compaction of .* failed/.test(server.output())) {
      if (i > 20) throw new Error(`no compaction was attempted:\n${server.output()}`);
      await write();
    }
    expect(server.output()).toContain(`compaction of ${dir} failed`);
    expect(readdirSync(dir).filter((f) => /^snapshot-\d+\.jobd$/.test(f))).toEqual([]);

    rmdirSync(obstacle);
    const failedAt = i;
    while (!readdirSync(dir).includes('snapshot-1.jobd')) {
      if (i > failedAt + 20) throw new Error(`compaction was not retried:\n${server.output()}`);
      await write();
    }
    await server.waitForLine(/compacted .* in [\d.]+ ms/); // stderr may trail the replies

    await server.kill();
    const restarted = await startEmbeddedProcess({ dataDir: dir });
    const after = await connect(restarted);
    expect(await collection(after, 'app', 'docs').countDocuments()).toBe(i);
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} closes gracefully: exit 0, data compacted, lock released`, async () => {
      const dir = dataDir();
      const server = await startEmbeddedProcess({ dataDir: dir });
      const client = await connect(server);
      await collection(client, 'app', 'jobs').insertMany([{ _id: 1 }, { _id: 2 }]);

      const exit = await server.stop(signal);
      expect(exit.code).toBe(0);
      expect(exit.output).toContain(`${signal} received, closing`);
      const files = readdirSync(dir).sort();
      expect(files).not.toContain('LOCK');
      expect(files).toEqual(['log-1.jobd', 'snapshot-1.jobd']);
      await closeClients();

      const restarted = await startEmbeddedProcess({ dataDir: dir });
      const after = await connect(restarted);
      expect(await contents(after, 'app', 'jobs')).toEqual([{ _id: 1 }, { _id: 2 }]);
    });
  }

  it('--fsync always acknowledges writes that survive SIGKILL; a bad --fsync or --repair value is refused', async () => {
    const dir = dataDir();
    const server = await startEmbeddedProcess({ dataDir: dir, args: ['--fsync', 'always'] });
    const client = await connect(server);
    await collection(client, 'app', 'jobs').insertOne({ _id: 'synced' });
    await server.kill();
    await closeClients();
    const restarted = await startEmbeddedProcess({ dataDir: dir });
    const after = await connect(restarted);
    expect(await contents(after, 'app', 'jobs')).toEqual([{ _id: 'synced' }]);

    const bad = await spawnEmbeddedProcess({ args: ['--fsync', 'sometimes'] }).exited;
    expect(bad.code).toBe(2);
    expect(bad.output).toContain("--fsync must be 'always' or 'never', got 'sometimes'");
    const badRepair = await spawnEmbeddedProcess({ args: ['--repair=yes'] }).exited;
    expect(badRepair.code).toBe(2);
    expect(badRepair.output).toContain("--repair takes no value, got 'yes'");
  });
});
