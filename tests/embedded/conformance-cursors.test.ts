/**
 * Cursors: batches honour batchSize, getMore continues until the server reports cursor id 0,
 * killCursors reports what it killed, and a killed cursor answers getMore with CursorNotFound (43).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Long, MongoClient, MongoServerError, type CommandSucceededEvent, type Document } from 'mongodb';
import { openTestDb, testMongoUri, type TestDb } from '../helpers/db.js';

let t: TestDb;

beforeEach(async () => {
  t = await openTestDb('conf_cursors');
});

afterEach(async () => {
  await t.close();
});

async function seed(n: number): Promise<void> {
  const docs = Array.from({ length: n }, (_, i) => ({ _id: i, v: i % 10 }));
  await t.db.collection('c').insertMany(docs as Document[]);
}

function cursorIdIsZero(id: unknown): boolean {
  return Long.isLong(id) ? id.isZero() : Number(id) === 0;
}

describe('cursors', () => {
  it('iterates 1,000 documents in batches of 7 through getMore until the cursor is exhausted', async () => {
    await seed(1000);
    const replies: Document[] = [];
    const client = new MongoClient(testMongoUri(), {
      monitorCommands: true,
      serverSelectionTimeoutMS: 10_000,
    });
    client.on('commandSucceeded', (e: CommandSucceededEvent) => {
      if (e.commandName === 'find' || e.commandName === 'getMore')
        replies.push({ name: e.commandName, reply: e.reply as Document });
    });
    try {
      await client.connect();
      const cursor = client
        .db(t.dbName)
        .collection('c')
        .find({}, { sort: { _id: 1 }, batchSize: 7 });
      const seen: number[] = [];
      for await (const doc of cursor) seen.push(Number(doc._id));
      expect(seen).toEqual(Array.from({ length: 1000 }, (_, i) => i));
      expect(cursor.closed).toBe(true);

      expect(replies[0]?.name).toBe('find');
      const batches = replies.map(
        (r) => (r.reply.cursor.firstBatch ?? r.reply.cursor.nextBatch) as Document[],
      );
      for (const batch of batches) expect(batch.length).toBeLessThanOrEqual(7);
      expect(batches.reduce((n, b) => n + b.length, 0)).toBe(1000);
      // 993 documents after the first batch need at least 142 getMores of at most 7.
      expect(replies.filter((r) => r.name === 'getMore').length).toBeGreaterThanOrEqual(142);
      // Only the last reply closes the cursor.
      const ids = replies.map((r) => r.reply.cursor.id);
      expect(cursorIdIsZero(ids[ids.length - 1])).toBe(true);
      expect(ids.slice(0, -1).every((id) => !cursorIdIsZero(id))).toBe(true);
    } finally {
      await client.close();
    }
  });

  it('returns cursor id 0 when the first batch holds everything', async () => {
    await seed(5);
    const reply = await t.db.command({ find: 'c', filter: {}, batchSize: 10 });
    expect(reply.cursor.firstBatch).toHaveLength(5);
    expect(cursorIdIsZero(reply.cursor.id)).toBe(true);
    expect(reply.cursor.ns).toBe(`${t.dbName}.c`);
  });

  it('continues a raw cursor with getMore and closes it when exhausted', async () => {
    await seed(10);
    const first = await t.db.command({ find: 'c', filter: {}, sort: { _id: 1 }, batchSize: 4 });
    const id = first.cursor.id as Long;
    expect(cursorIdIsZero(id)).toBe(false);
    expect(first.cursor.firstBatch.map((d: Document) => d._id)).toEqual([0, 1, 2, 3]);
    const second = await t.db.command({ getMore: id, collection: 'c', batchSize: 4 });
    expect(second.cursor.nextBatch.map((d: Document) => d._id)).toEqual([4, 5, 6, 7]);
    const third = await t.db.command({ getMore: id, collection: 'c', batchSize: 4 });
    expect(third.cursor.nextBatch.map((d: Document) => d._id)).toEqual([8, 9]);
    expect(cursorIdIsZero(third.cursor.id)).toBe(true);
  });

  it('kills a cursor with killCursors; a later getMore fails with CursorNotFound 43', async () => {
    await seed(10);
    const first = await t.db.command({ find: 'c', filter: {}, batchSize: 2 });
    const id = first.cursor.id as Long;
    expect(cursorIdIsZero(id)).toBe(false);

    const killed = await t.db.command({ killCursors: 'c', cursors: [id] });
    expect(killed.cursorsKilled.map(String)).toEqual([String(id)]);
    expect(killed.cursorsNotFound).toEqual([]);

    let error: unknown;
    try {
      await t.db.command({ getMore: id, collection: 'c' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(MongoServerError);
    expect((error as MongoServerError).code).toBe(43);
    expect((error as MongoServerError).codeName).toBe('CursorNotFound');
  });

  it('closing a driver cursor early kills it on the server', async () => {
    await seed(20);
    const cursor = t.db.collection('c').find({}, { batchSize: 3 });
    await cursor.next();
    const id = cursor.id;
    expect(id && !cursorIdIsZero(id)).toBe(true);
    await cursor.close();
    const again = await t.db.command({ killCursors: 'c', cursors: [id] });
    expect(again.cursorsNotFound.map(String)).toEqual([String(id)]);
  });
});
