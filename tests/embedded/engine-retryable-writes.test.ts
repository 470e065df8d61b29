/**
 * Retryable writes over a real network that loses a reply: the lossy proxy forwards the write, the
 * server applies it, the reply is dropped and the connection reset, and the driver retries the same
 * command (same lsid and txnNumber) on a new connection. The server must answer the retry with the
 * outcome of the first execution, not execute it again. This is MongoDB's documented behaviour on a
 * replica set, so these tests run unchanged against a real one.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Long, MongoClient, MongoServerError, type Collection, type Document } from 'mongodb';
import { Binary, BSON } from 'bson';
import { RetryableWriteTable, sessionKey } from '../../src/embedded/retryableWrites.js';
import { startLossyProxy, type LossyProxy } from '../helpers/lossyProxy.js';
import { openTestDb, type TestDb } from '../helpers/db.js';

type Task = { _id: number; state: string; owner?: string; n?: number };

const singleHost = (uri: string): boolean => /^mongodb:\/\/(?:[^@/]*@)?[^/,?]+(?:[/?]|$)/.test(uri);

describe('retryable writes whose first reply is lost', () => {
  let t: TestDb;
  let proxy: LossyProxy;
  let client: MongoClient;
  let tasks: Collection<Task>;
  /** The same collection, straight to the server (not through the proxy). */
  let direct: Collection<Task>;

  beforeEach(async (ctx) => {
    t = await openTestDb('retryable');
    if (!singleHost(t.uri)) ctx.skip();
    proxy = await startLossyProxy(t.uri);
    client = new MongoClient(proxy.uri, { serverSelectionTimeoutMS: 10_000, retryWrites: true });
    await client.connect();
    tasks = client.db(t.dbName).collection<Task>('tasks');
    direct = t.db.collection<Task>('tasks');
  });
  afterEach(async () => {
    await client?.close();
    await proxy?.close();
    await t?.close();
  });

  it('findOneAndUpdate claims exactly one document and returns its pre- and post-image', async () => {
    await direct.insertMany([
      { _id: 1, state: 'queued' },
      { _id: 2, state: 'queued' },
      { _id: 3, state: 'queued' },
    ]);
    let lost = proxy.loseNextReply('findAndModify', 'tasks');
    const after = await tasks.findOneAndUpdate(
      { state: 'queued' },
      { $set: { state: 'running', owner: 'w1' } },
      { sort: { _id: 1 }, returnDocument: 'after' },
    );
    await lost;
    expect(after).toEqual({ _id: 1, state: 'running', owner: 'w1' });
    expect(await direct.find({ state: 'running' }).toArray()).toEqual([
      { _id: 1, state: 'running', owner: 'w1' },
    ]);

    lost = proxy.loseNextReply('findAndModify', 'tasks');
    const before = await tasks.findOneAndUpdate(
      { state: 'queued' },
      { $set: { state: 'running', owner: 'w2' } },
      { sort: { _id: 1 }, returnDocument: 'before' },
    );
    await lost;
    expect(before).toEqual({ _id: 2, state: 'queued' });
    expect(await direct.find({ state: 'running' }, { sort: { _id: 1 } }).toArray()).toEqual([
      { _id: 1, state: 'running', owner: 'w1' },
      { _id: 2, state: 'running', owner: 'w2' },
    ]);
    expect(await direct.findOne({ _id: 3 })).toEqual({ _id: 3, state: 'queued' });
  });

  it('insertOne succeeds once, with no duplicate-key error from the retry', async () => {
    const lost = proxy.loseNextReply('insert', 'tasks');
    const result = await tasks.insertOne({ _id: 7, state: 'queued' });
    await lost;
    expect(result).toMatchObject({ acknowledged: true, insertedId: 7 });
    expect(await direct.find({}).toArray()).toEqual([{ _id: 7, state: 'queued' }]);
  });

  it('updateOne with $inc increments once', async () => {
    await direct.insertOne({ _id: 1, state: 'queued', n: 0 });
    const lost = proxy.loseNextReply('update', 'tasks');
    const result = await tasks.updateOne({ _id: 1 }, { $inc: { n: 1 } });
    await lost;
    expect(result).toMatchObject({ matchedCount: 1, modifiedCount: 1 });
    expect(await direct.findOne({ _id: 1 })).toEqual({ _id: 1, state: 'queued', n: 1 });
  });

  it('an upsert reports the upserted id on the retry and creates one document', async () => {
    const lost = proxy.loseNextReply('update', 'tasks');
    const result = await tasks.updateOne(
      { _id: 9 },
      { $set: { state: 'queued' }, $inc: { n: 1 } },
      { upsert: true },
    );
    await lost;
    expect(result).toMatchObject({ matchedCount: 0, upsertedCount: 1, upsertedId: 9 });
    expect(await direct.find({}).toArray()).toEqual([{ _id: 9, state: 'queued', n: 1 }]);
  });

  it('deleteOne whose reply is lost deletes one document and reports one', async () => {
    await direct.insertMany([
      { _id: 1, state: 'done' },
      { _id: 2, state: 'done' },
    ]);
    const lost = proxy.loseNextReply('delete', 'tasks');
    const result = await tasks.deleteOne({ state: 'done' });
    await lost;
    expect(result).toMatchObject({ deletedCount: 1 });
    expect(await direct.countDocuments({})).toBe(1);
  });

  it('a bulkWrite of retryable statements is applied once', async () => {
    await direct.insertOne({ _id: 1, state: 'queued', n: 0 });
    const lost = proxy.loseNextReply('update', 'tasks');
    const result = await tasks.bulkWrite(
      [
        { updateOne: { filter: { _id: 1 }, update: { $inc: { n: 1 } } } },
        { updateOne: { filter: { _id: 1 }, update: { $inc: { n: 10 } } } },
      ],
      { ordered: true },
    );
    await lost;
    expect(result.modifiedCount).toBe(2);
    expect(await direct.findOne({ _id: 1 })).toMatchObject({ n: 11 });
  });
});

describe('retryable writes: what the server remembers per session', () => {
  let t: TestDb;
  beforeEach(async () => {
    t = await openTestDb('txnnumber');
  });
  afterEach(async () => {
    await t?.close();
  });

  /**
   * Sends a write command with an explicit session and txnNumber, as the driver does for a retry. The
   * txnNumbers are well above those the driver may already have used on the pooled session.
   */
  function send(
    session: ReturnType<MongoClient['startSession']>,
    txnNumber: number,
    cmd: Document,
  ): Promise<Document> {
    return t.db.command({ ...cmd, txnNumber: Long.fromNumber(1000 + txnNumber) }, { session });
  }

  it('a repeated txnNumber gets the recorded reply; an older one is refused with TransactionTooOld (225)', async () => {
    const session = t.client.startSession();
    try {
      const coll = t.db.collection<Task>('counters');
      await coll.insertOne({ _id: 1, state: 'x', n: 0 });
      const inc = { update: 'counters', updates: [{ q: { _id: 1 }, u: { $inc: { n: 1 } } }] };
      const first = await send(session, 5, inc);
      const again = await send(session, 5, inc);
      expect(again).toMatchObject({ n: first.n as number, nModified: first.nModified as number });
      expect(await coll.findOne({ _id: 1 })).toMatchObject({ n: 1 });

      await send(session, 6, inc);
      expect(await coll.findOne({ _id: 1 })).toMatchObject({ n: 2 });

      const err = await send(session, 5, inc).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MongoServerError);
      expect((err as MongoServerError).code).toBe(225);
      expect((err as MongoServerError).codeName).toBe('TransactionTooOld');
      expect(await coll.findOne({ _id: 1 })).toMatchObject({ n: 2 });
    } finally {
      await session.endSession();
    }
  });
});

describe('retryable writes: the per-session table', () => {
  const lsid = new Binary(Buffer.alloc(16, 7), 4);
  const write = (txnNumber: bigint) => ({ key: sessionKey(lsid) as string, lsid, txnNumber });

  it('forgets a session after the session timeout without writes, and at endSessions', () => {
    const minute = 60_000;
    const table = new RetryableWriteTable(30 * minute);
    expect(table.begin(write(1n), 0)).toBeUndefined();
    table.record(write(1n), BSON.serialize({ n: 1, ok: 1 }), 0);
    const n = (reply: unknown): number => Number((reply as { n: unknown }).n);
    expect(n(table.begin(write(1n), 29 * minute))).toBe(1);
    // Used at minute 29, so still remembered at minute 58; forgotten once 30 minutes pass without use,
    // after which the same txnNumber is neither answered from memory nor refused as too old.
    expect(n(table.begin(write(1n), 58 * minute))).toBe(1);
    expect(table.begin(write(1n), 89 * minute)).toBeUndefined();
    expect(table.size).toBe(1); // only the entry just begun
    table.record(write(1n), BSON.serialize({ n: 2, ok: 1 }), 89 * minute);
    expect(() => table.begin(write(0n), 90 * minute)).toThrow(/TransactionTooOld|newer retryable write/);
    table.forget([{ id: lsid }]);
    expect(table.size).toBe(0);
  });
});
