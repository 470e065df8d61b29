/**
 * BSON numeric types kept through storage and updates, collations on reads and writes, views,
 * validators and namespace edge cases — as MongoDB 7.0 documents them.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  Decimal128,
  Double,
  Int32,
  Long,
  MongoClient,
  MongoServerError,
  type Collection,
  type Db,
  type Document,
} from 'mongodb';
import { startEmbeddedServer } from '../../src/embedded/index.js';
import { openTestDb, type TestDb } from '../helpers/db.js';
import { useTempDirs } from '../fixtures/embedded/tempDir.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

let t: TestDb;
let coll: Collection<Loose>;

beforeEach(async () => {
  t = await openTestDb('engine_types');
  coll = t.db.collection('c');
});

afterEach(async () => {
  await t.close();
});

/** Reads documents with every number wrapped in its BSON type. */
async function raw(filter: Document = {}): Promise<Document[]> {
  return coll.find(filter, { promoteValues: false, promoteLongs: false, sort: { _id: 1 } }).toArray();
}

function bsonType(v: unknown): string {
  return (v as { _bsontype: string })._bsontype;
}

describe('numeric types', () => {
  it('keeps double, int32, int64 and decimal128 as stored', async () => {
    await coll.insertOne({
      _id: 1,
      d: new Double(1),
      i: new Int32(1),
      l: Long.fromNumber(5),
      m: Decimal128.fromString('1.50'),
    });
    const [doc] = await raw();
    expect(bsonType(doc?.d)).toBe('Double');
    expect(bsonType(doc?.i)).toBe('Int32');
    expect(bsonType(doc?.l)).toBe('Long');
    expect(String(doc?.m)).toBe('1.50');
  });

  it('$inc keeps the wider type, turns an overflowing int32 into a long, and reports long overflow', async () => {
    await coll.insertOne({
      _id: 1,
      i: new Int32(2147483647),
      l: Long.fromNumber(1),
      d: new Double(1),
      n: new Int32(1),
    });
    await coll.updateOne({ _id: 1 }, { $inc: { i: 1, l: 1, d: 1, n: new Double(0.5) } });
    const [doc] = await raw();
    expect(bsonType(doc?.i)).toBe('Long');
    expect(String(doc?.i)).toBe('2147483648');
    expect(bsonType(doc?.l)).toBe('Long');
    expect(bsonType(doc?.d)).toBe('Double');
    expect((doc?.d as Double).value).toBe(2);
    expect(bsonType(doc?.n)).toBe('Double');
    await coll.updateOne({ _id: 1 }, { $set: { big: Long.MAX_VALUE } });
    await expect(coll.updateOne({ _id: 1 }, { $inc: { big: 1 } })).rejects.toThrow(MongoServerError);
  });

  it('$mul of an int32 by a double gives a double; $min/$max compare across types', async () => {
    await coll.insertOne({ _id: 1, a: new Int32(3), lo: Long.fromNumber(10) });
    await coll.updateOne({ _id: 1 }, { $mul: { a: new Double(2) }, $min: { lo: new Double(2.5) } });
    const [doc] = await raw();
    expect(bsonType(doc?.a)).toBe('Double');
    expect((doc?.a as Double).value).toBe(6);
    expect((doc?.lo as Double).value).toBe(2.5);
  });
});

describe('collation', () => {
  beforeEach(async () => {
    await coll.insertMany([
      { _id: 1, s: 'apple' },
      { _id: 2, s: 'Apple' },
      { _id: 3, s: 'banana' },
      { _id: 4, s: 'item10' },
      { _id: 5, s: 'item9' },
    ]);
    await coll.createIndex({ s: 1 });
  });

  it('strength 2 matches case-insensitively, also where an index exists on the field', async () => {
    const ids = (await coll.find({ s: 'APPLE' }, { collation: { locale: 'en', strength: 2 } }).toArray()).map(
      (d) => d._id,
    );
    expect(ids.sort()).toEqual([1, 2]);
    expect(
      await coll.countDocuments({ s: { $in: ['BANANA'] } }, { collation: { locale: 'en', strength: 1 } }),
    ).toBe(1);
  });

  it('numericOrdering sorts digits by value; simple is binary', async () => {
    const sorted = await coll
      .find({ s: /^item/ }, { sort: { s: 1 }, collation: { locale: 'en', numericOrdering: true } })
      .toArray();
    expect(sorted.map((d) => d.s)).toEqual(['item9', 'item10']);
    const binary = await coll
      .find({ s: /^item/ }, { sort: { s: 1 }, collation: { locale: 'simple' } })
      .toArray();
    expect(binary.map((d) => d.s)).toEqual(['item10', 'item9']);
  });

  it('updates and deletes honour the collation', async () => {
    const r = await coll.updateMany(
      { s: 'APPLE' },
      { $set: { hit: true } },
      { collation: { locale: 'en', strength: 2 } },
    );
    expect(r.modifiedCount).toBe(2);
    const d = await coll.deleteMany({ s: 'Banana' }, { collation: { locale: 'en', strength: 1 } });
    expect(d.deletedCount).toBe(1);
  });

  it('refuses unknown collation fields and invalid strengths', async () => {
    await expect(coll.find({}, { collation: { locale: 'en', bogus: 1 } as Loose }).toArray()).rejects.toThrow(
      /bogus/,
    );
    await expect(
      coll.find({}, { collation: { locale: 'en', strength: 9 } as Loose }).toArray(),
    ).rejects.toThrow(/strength/);
  });
});

describe('views, validators and namespaces', () => {
  it('reads through a view and refuses writes with CommandNotSupportedOnView 166', async () => {
    await coll.insertMany([
      { _id: 1, x: 1 },
      { _id: 2, x: 2 },
      { _id: 3, x: 3 },
    ]);
    await t.db.createCollection('v', { viewOn: 'c', pipeline: [{ $match: { x: { $gte: 2 } } }] });
    const view = t.db.collection<Loose>('v');
    expect((await view.find({}, { sort: { _id: -1 } }).toArray()).map((d) => d._id)).toEqual([3, 2]);
    expect(await view.countDocuments({ x: 3 })).toBe(1);
    expect(await view.estimatedDocumentCount()).toBe(2);
    const err = await view.insertOne({ _id: 9 }).catch((e: MongoServerError) => e);
    expect((err as MongoServerError).code).toBe(166);
    const infos = await t.db.listCollections({ name: 'v' }).toArray();
    expect(infos[0]?.type).toBe('view');
  });

  it('a validator refuses documents with DocumentValidationFailure 121 unless validation is bypassed', async () => {
    await t.db.createCollection('c', { validator: { x: { $type: 'string' } } });
    await coll.insertOne({ _id: 1, x: 'ok' });
    const err = await coll.insertOne({ _id: 2, x: 5 }).catch((e: MongoServerError) => e);
    expect((err as MongoServerError).code).toBe(121);
    await coll.insertOne({ _id: 3, x: 5 }, { bypassDocumentValidation: true });
    await t.db.command({ collMod: 'c', validator: { x: { $type: 'number' } } });
    await coll.updateOne({ _id: 3 }, { $set: { x: 6 } });
    expect(await coll.countDocuments()).toBe(2);
  });

  it('dropping a missing collection succeeds, as in MongoDB 7.0', async () => {
    await expect(t.db.dropCollection('never_created')).resolves.toBe(true);
  });

  it('$listLocalSessions lists the session the command runs in', async () => {
    const admin = t.client.db('admin');
    const sessions = await admin.aggregate([{ $listLocalSessions: {} }]).toArray();
    expect(sessions.length).toBeGreaterThan(0);
    expect(sessions[0]?._id?.id).toBeDefined();
  });
});

describe('numeric types across a restart of a durable server', () => {
  const tempDir = useTempDirs('types');

  it('replays int32, double, int64 and decimal128 with their types, and collMod validators', async () => {
    const dir = tempDir();
    const run = async (fn: (c: Collection<Loose>, db: Db) => Promise<void>): Promise<void> => {
      const server = await startEmbeddedServer({ dataDir: dir });
      const client = new MongoClient(server.uri);
      try {
        await client.connect();
        const db = client.db('types');
        await fn(db.collection('c'), db);
      } finally {
        await client.close();
        await server.close();
      }
    };
    await run(async (c, db) => {
      await c.insertOne({
        _id: 1,
        d: new Double(1),
        i: new Int32(2),
        l: Long.fromNumber(3),
        m: Decimal128.fromString('4.0'),
      });
      await db.command({ collMod: 'c', validator: { i: { $type: 'int' } } });
    });
    await run(async (c) => {
      const [doc] = await c.find({}, { promoteValues: false, promoteLongs: false }).toArray();
      expect([doc?.d, doc?.i, doc?.l, doc?.m].map(bsonType)).toEqual([
        'Double',
        'Int32',
        'Long',
        'Decimal128',
      ]);
      const err = await c.insertOne({ _id: 2, i: 'text' }).catch((e: MongoServerError) => e);
      expect((err as MongoServerError).code).toBe(121);
    });
  });
});
