/**
 * MongoDB's document size limit through the official driver. MongoDB documents a maximum BSON document
 * size of 16 MiB (maxBsonObjectSize, a document of exactly that size is stored), that each document an
 * aggregation returns is subject to it, and that a cursor hands out its results in batches. The errors
 * asserted are mongod 7.0's: an insert over the limit is a write error BadValue ("object to insert too
 * large"), an update that grows a document past it 17419 (BSONObjectTooLarge 10334 from 8.0 on), an
 * upsert 17420, a result or reply over the internal limit BSONObjectTooLarge 10334.
 *
 * Every refusal leaves the data exactly as it was, and the server answers a ping after each.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BSON, EJSON } from 'bson';
import { MongoClient, MongoServerError, type Collection, type Document } from 'mongodb';
import { openTestDb, testBackend, type TestDb } from '../helpers/db.js';
import { serverError } from '../helpers/serverError.js';

const LIMIT = 16 * 1024 * 1024;
const MB = 1024 * 1024;

let t: TestDb;
let seedDigest: string;

/** A document { _id, pad } whose BSON is exactly `size` bytes. */
function docOfSize(id: unknown, size: number, field = 'pad'): Document {
  const base = BSON.calculateObjectSize({ _id: id, [field]: '' });
  const doc = { _id: id, [field]: 'x'.repeat(size - base) };
  expect(BSON.calculateObjectSize(doc)).toBe(size);
  return doc;
}

async function digest(coll: Collection): Promise<string> {
  const docs = await coll.find({}, { sort: { _id: 1 } }).toArray();
  return createHash('sha256')
    .update(EJSON.stringify(docs, { relaxed: false }))
    .digest('hex');
}

/** 17419 on mongod up to 7.0 (which this server reports being), BSONObjectTooLarge from 8.0. */
function expectUpdateTooLarge(err: MongoServerError): void {
  if (t.backend === 'embedded') expect(err.code).toBe(17419);
  else expect([17419, 10334]).toContain(err.code);
  expect(err.message).toContain(`Resulting document after update is larger than ${LIMIT}`);
}

async function expectServing(): Promise<void> {
  expect(await t.db.command({ ping: 1 })).toMatchObject({ ok: 1 });
}

beforeAll(async () => {
  t = await openTestDb('limits');
  const seed: Document[] = Array.from({ length: 50 }, (_, i) => ({ _id: i, v: `seed-${i}` }));
  await t.db.collection('seed').insertMany(seed);
  seedDigest = await digest(t.db.collection('seed'));
});

afterAll(async () => {
  // Data written before all the refusals is intact.
  if (t) {
    expect(await digest(t.db.collection('seed'))).toBe(seedDigest);
    await t.close();
  }
});

describe('limits advertised in hello', () => {
  it('advertises maxBsonObjectSize 16 MiB, maxMessageSizeBytes 48000000, maxWriteBatchSize 100000', async () => {
    const hello = await t.db.admin().command({ hello: 1 });
    expect(hello).toMatchObject({
      maxBsonObjectSize: LIMIT,
      maxMessageSizeBytes: 48_000_000,
      maxWriteBatchSize: 100_000,
    });
  });
});

describe('documents stored', () => {
  it('stores a document of exactly 16 MiB and reads it back whole', async () => {
    const coll = t.db.collection('exact');
    await coll.insertOne(docOfSize(1, LIMIT));
    const back = await coll.findOne({ _id: 1 } as Document);
    expect(back && BSON.calculateObjectSize(back)).toBe(LIMIT);
    await expectServing();
  });

  it('refuses insertOne of 16 MiB + 1 byte with BadValue "object to insert too large", storing nothing', async () => {
    const coll = t.db.collection('insert_one');
    await coll.insertOne({ _id: 'before' } as Document);
    const before = await digest(coll);
    const err = await serverError(coll.insertOne(docOfSize('big', LIMIT + 1)));
    expect(err.code).toBe(2);
    expect(err.message).toBe(`object to insert too large. size in bytes: ${LIMIT + 1}, max size: ${LIMIT}`);
    expect(await digest(coll)).toBe(before);
    await expectServing();
  });

  it('an ordered insert batch whose 3rd document is too large keeps the two before it and reports index 2', async () => {
    // The driver's insertMany refuses such a document itself, so the command is sent as is.
    const reply = await t.db.command({
      insert: 'insert_batch',
      documents: [{ _id: 0 }, { _id: 1 }, docOfSize(2, LIMIT + 1), { _id: 3 }],
    });
    expect(reply.ok).toBe(1);
    expect(reply.n).toBe(2);
    expect(reply.writeErrors).toHaveLength(1);
    expect(reply.writeErrors[0]).toMatchObject({ index: 2, code: 2 });
    expect(reply.writeErrors[0].errmsg).toContain('object to insert too large');
    const ids = (await t.db.collection('insert_batch').find().toArray()).map((d) => d._id);
    expect(ids).toEqual([0, 1]);
    await expectServing();
  });

  it('an unordered batch goes on past the too-large document', async () => {
    const reply = await t.db.command({
      insert: 'insert_unordered',
      documents: [{ _id: 0 }, docOfSize(1, LIMIT + 1), { _id: 2 }],
      ordered: false,
    });
    expect(reply).toMatchObject({ ok: 1, n: 2 });
    expect(reply.writeErrors.map((e: Document) => [e.index, e.code])).toEqual([[1, 2]]);
    await expectServing();
  });

  it('refuses replaceOne whose replacement makes the document 16 MiB + 1, leaving it unchanged', async () => {
    const coll = t.db.collection('replace');
    await coll.insertOne({ _id: 1, v: 'original' } as Document);
    const before = await digest(coll);
    const replacement = docOfSize(1, LIMIT + 1);
    delete replacement._id;
    const err = await serverError(coll.replaceOne({ _id: 1 } as Document, replacement));
    expectUpdateTooLarge(err);
    expect(await digest(coll)).toBe(before);
    await expectServing();
  });

  it('refuses updateOne that grows a document past 16 MiB, and accepts one that makes it exactly 16 MiB', async () => {
    const coll = t.db.collection('grow');
    await coll.insertOne({ _id: 1, a: 'x'.repeat(10 * MB) } as Document);
    const before = await digest(coll);
    const exact = docOfSize(1, LIMIT, 'b');
    const growth = (exact.b as string).length - 10 * MB - BSON.calculateObjectSize({ a: '' }) + 5;
    expect(BSON.calculateObjectSize({ _id: 1, a: 'x'.repeat(10 * MB), b: 'y'.repeat(growth) })).toBe(LIMIT);
    const err = await serverError(
      coll.updateOne({ _id: 1 } as Document, { $set: { b: 'y'.repeat(growth + 1) } }),
    );
    expectUpdateTooLarge(err);
    expect(await digest(coll)).toBe(before);
    const ok = await coll.updateOne({ _id: 1 } as Document, { $set: { b: 'y'.repeat(growth) } });
    expect(ok.modifiedCount).toBe(1);
    await expectServing();
  });

  it('small updates creep a document up to 16 MiB: each is refused exactly when its result would pass it', async () => {
    const coll = t.db.collection('creep');
    const start = LIMIT - 40_000;
    let model: Document = docOfSize(1, start);
    await coll.insertOne(model);
    // Nested paths, new and existing fields, numbers, dates: every step of $set, $inc and $currentDate.
    let refused = 0;
    for (let i = 0; refused === 0; i++) {
      const update = {
        $set: { [`f${i % 40}.g${i}`]: 'y'.repeat(1000 + (i % 7)), n: i },
        $inc: { total: 1 },
        $currentDate: { at: true as const },
      };
      const next: Document = {
        ...model,
        n: i,
        total: ((model.total as number | undefined) ?? 0) + 1,
        at: new Date(),
      };
      next[`f${i % 40}`] = {
        ...((model[`f${i % 40}`] as Document | undefined) ?? {}),
        [`g${i}`]: 'y'.repeat(1000 + (i % 7)),
      };
      const fits = BSON.calculateObjectSize(next) <= LIMIT;
      const outcome = await coll.updateOne({ _id: 1 } as Document, update).catch((e: unknown) => e);
      if (fits) {
        expect(outcome).toMatchObject({ modifiedCount: 1 });
        model = next;
      } else {
        expectUpdateTooLarge(outcome as MongoServerError);
        refused++;
      }
    }
    const stored = (await coll.findOne({ _id: 1 } as Document)) as Document;
    expect(BSON.calculateObjectSize(stored)).toBe(BSON.calculateObjectSize(model));
    expect(BSON.calculateObjectSize(stored)).toBeGreaterThan(LIMIT - 1100);
    await expectServing();
  });

  it('refuses an upsert that would insert a document over 16 MiB with 17420, inserting nothing', async () => {
    const coll = t.db.collection('upsert');
    const err = await serverError(
      coll.updateOne({ _id: 'new' } as Document, { $set: { pad: 'x'.repeat(LIMIT) } }, { upsert: true }),
    );
    expect(err.code).toBe(17420);
    expect(err.message).toContain(`Document to upsert is larger than ${LIMIT}`);
    expect(await coll.countDocuments()).toBe(0);
    await expectServing();
  });

  it('refuses findOneAndUpdate growing a document past 16 MiB, and its upsert form, changing nothing', async () => {
    const coll = t.db.collection('fam');
    await coll.insertOne({ _id: 1, a: 'x'.repeat(9 * MB) } as Document);
    const before = await digest(coll);
    expectUpdateTooLarge(
      await serverError(
        coll.findOneAndUpdate(
          { _id: 1 } as Document,
          { $set: { b: 'y'.repeat(8 * MB) } },
          { returnDocument: 'after' },
        ),
      ),
    );
    const upsert = await serverError(
      coll.findOneAndUpdate(
        { _id: 2 } as Document,
        { $set: { b: 'y'.repeat(LIMIT) } },
        { upsert: true, returnDocument: 'after' },
      ),
    );
    expect(upsert.code).toBe(17420);
    expect(await digest(coll)).toBe(before);
    await expectServing();
  });
});

describe('results over the limit', () => {
  it('a $group/$push over twenty 1 MB documents gets BSONObjectTooLarge, and the server keeps serving', async () => {
    const coll = t.db.collection('group');
    for (let i = 0; i < 20; i++) await coll.insertOne({ _id: i, blob: 'z'.repeat(MB) } as Document);
    const err = await serverError(
      coll.aggregate([{ $group: { _id: null, all: { $push: '$blob' } } }]).toArray(),
    );
    expect(err.code).toBe(10334);
    expect(err.codeName).toBe('BSONObjectTooLarge');
    expect(err.message).toMatch(/BSONObj size: \d+ \(0x[0-9A-F]+\) is invalid/);
    await expectServing();
    // The same data in results within the limit is served.
    const counted = await coll.aggregate([{ $group: { _id: null, n: { $sum: 1 } } }]).toArray();
    expect(counted).toEqual([{ _id: null, n: 20 }]);
  });

  it.runIf(testBackend() === 'embedded')(
    'a findAndModify whose reply would be over the limit gets BSONObjectTooLarge and writes nothing',
    async () => {
      const coll = t.db.collection('fam_reply');
      // The reply holds the upserted _id twice (lastErrorObject.upserted and value): 2 x 8 MB.
      const id = 'i'.repeat(8 * MB);
      const err = await serverError(
        coll.findOneAndUpdate(
          { _id: id } as Document,
          { $set: { pad: 'p'.repeat(7 * MB) } },
          { upsert: true, returnDocument: 'after' },
        ),
      );
      expect(err.code).toBe(10334);
      expect(await coll.countDocuments()).toBe(0);
      await expectServing();
    },
  );
});

describe('cursor batches', () => {
  it('reads five 15 MB documents back over several batches, each within 16 MiB', async () => {
    const coll = t.db.collection('batches');
    for (let i = 0; i < 5; i++) await coll.insertOne({ _id: i, blob: String(i).repeat(15 * MB) } as Document);
    const watcher = new MongoClient(t.uri, { monitorCommands: true });
    const batches: number[] = [];
    watcher.on('commandSucceeded', (e) => {
      const cursor = (e.reply as Document).cursor as Document | undefined;
      const batch = (cursor?.firstBatch ?? cursor?.nextBatch) as Document[] | undefined;
      if ((e.commandName === 'find' || e.commandName === 'getMore') && batch) batches.push(batch.length);
    });
    try {
      await watcher.connect();
      const docs = await watcher
        .db(t.dbName)
        .collection('batches')
        .find({}, { sort: { _id: 1 } })
        .toArray();
      expect(docs.map((d) => [d._id, (d.blob as string).length])).toEqual(
        [0, 1, 2, 3, 4].map((i) => [i, 15 * MB]),
      );
      // Two 15 MB documents do not fit in one batch: one per batch, every one of them delivered.
      expect(batches).toEqual([1, 1, 1, 1, 1]);
    } finally {
      await watcher.close();
    }
    await expectServing();
  });
});

describe('write batch size', () => {
  it('refuses a write command of more than 100000 statements (or none) with InvalidLength', async () => {
    const err = await serverError(
      t.db.command({
        delete: 'batch_size',
        deletes: Array.from({ length: 100_001 }, () => ({ q: { _id: -1 }, limit: 1 })),
      }),
    );
    expect(err.code).toBe(16);
    expect(err.codeName).toBe('InvalidLength');
    const none = await serverError(t.db.command({ insert: 'batch_size', documents: [] }));
    expect(none.code).toBe(16);
    const max = await t.db.command({
      delete: 'batch_size',
      deletes: Array.from({ length: 100_000 }, () => ({ q: { _id: -1 }, limit: 1 })),
    });
    expect(max).toMatchObject({ ok: 1, n: 0 });
    await expectServing();
  });
});
