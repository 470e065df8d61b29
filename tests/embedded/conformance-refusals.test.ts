/**
 * Honest refusals: every option, argument and operator the server does not honour is refused with
 * MongoDB's code, and the ones it honours are accepted. Cases marked `embeddedOnly` are options a
 * real MongoDB implements and the embedded server refuses (NotImplemented 238, or MongoDB's code for
 * what the embedded server lacks); the others assert MongoDB 7.0's own behaviour on a one-member
 * replica set, so they hold against a real server too.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Long, MongoServerError, MongoWriteConcernError, Timestamp, type Document } from 'mongodb';
import { openTestDb, type TestDb } from '../helpers/db.js';
import { runCommand } from '../../src/embedded/commands.js';
import { CursorManager } from '../../src/embedded/cursor.js';
import { Engine } from '../../src/embedded/engine.js';
import { checkTimeLimit } from '../../src/embedded/options.js';
import { openDurableStore } from '../../src/embedded/persistence.js';
import { useTempDirs } from '../fixtures/embedded/tempDir.js';

let t: TestDb;
const embedded = (): boolean => t.backend === 'embedded';

beforeAll(async () => {
  t = await openTestDb('refusals');
  await t.db.collection('c').insertMany([
    { _id: 1, s: 'a', n: 1 },
    { _id: 2, s: 'B', n: 2 },
  ] as never[]);
  await t.db.collection('c').createIndex({ n: 1 });
});

afterAll(async () => {
  await t.close();
});

interface Case {
  name: string;
  cmd: Document;
  code: number;
  embeddedOnly?: boolean;
}

const snapshot = { readConcern: { level: 'snapshot' } };
const future = (): Timestamp => new Timestamp({ t: Math.floor(Date.now() / 1000) + 3600, i: 1 });

/** The refusals that the issue found missing: readConcern snapshot and atClusterTime were accepted. */
const READ_CONCERN_CASES: Case[] = [
  { name: 'insert with readConcern snapshot', cmd: { insert: 'c', documents: [{}], ...snapshot }, code: 72 },
  {
    name: 'update with readConcern snapshot',
    cmd: { update: 'c', updates: [{ q: {}, u: { $set: { x: 1 } } }], ...snapshot },
    code: 72,
  },
  {
    name: 'delete with readConcern snapshot',
    cmd: { delete: 'c', deletes: [{ q: { _id: 9 }, limit: 1 }], ...snapshot },
    code: 72,
  },
  {
    name: 'findAndModify with readConcern snapshot',
    cmd: { findAndModify: 'c', query: { _id: 9 }, remove: true, ...snapshot },
    code: 72,
  },
  { name: 'listCollections with readConcern snapshot', cmd: { listCollections: 1, ...snapshot }, code: 72 },
  { name: 'listIndexes with readConcern snapshot', cmd: { listIndexes: 'c', ...snapshot }, code: 72 },
  { name: 'count with readConcern snapshot', cmd: { count: 'c', ...snapshot }, code: 72 },
  {
    name: 'insert with readConcern majority',
    cmd: { insert: 'c', documents: [{}], readConcern: { level: 'majority' } },
    code: 72,
  },
  {
    name: 'find with readConcern snapshot (no history to read)',
    cmd: { find: 'c', ...snapshot },
    code: 72,
    embeddedOnly: true,
  },
  {
    name: 'find at an old atClusterTime',
    cmd: { find: 'c', readConcern: { level: 'snapshot', atClusterTime: new Timestamp({ t: 1, i: 1 }) } },
    code: 72,
    embeddedOnly: true,
  },
  {
    name: 'aggregate with readConcern snapshot',
    cmd: { aggregate: 'c', pipeline: [], cursor: {}, ...snapshot },
    code: 72,
    embeddedOnly: true,
  },
  {
    name: 'atClusterTime without level snapshot',
    cmd: { find: 'c', readConcern: { level: 'local', atClusterTime: new Timestamp({ t: 1, i: 1 }) } },
    code: 72,
  },
  {
    name: 'afterClusterTime with level available',
    cmd: { find: 'c', readConcern: { level: 'available', afterClusterTime: new Timestamp({ t: 1, i: 1 }) } },
    code: 72,
  },
  {
    name: 'afterClusterTime in the future',
    cmd: { find: 'c', readConcern: { afterClusterTime: future() } },
    code: 72,
  },
  { name: 'an unknown readConcern level', cmd: { find: 'c', readConcern: { level: 'bogus' } }, code: 9 },
  {
    name: 'an unknown readConcern field',
    cmd: { find: 'c', readConcern: { level: 'local', foo: 1 } },
    code: 72,
  },
  { name: 'a readConcern that is not an object', cmd: { find: 'c', readConcern: 'local' }, code: 9 },
];

const WRITE_CONCERN_CASES: Case[] = [
  { name: 'find with a writeConcern', cmd: { find: 'c', writeConcern: { w: 1 } }, code: 72 },
  {
    name: 'an unknown writeConcern field',
    cmd: { insert: 'c', documents: [{}], writeConcern: { foo: 1 } },
    code: 9,
  },
  { name: 'a negative w', cmd: { insert: 'c', documents: [{}], writeConcern: { w: -1 } }, code: 9 },
  {
    name: 'j: true on a server without a journal (no data directory)',
    cmd: { insert: 'c', documents: [{}], writeConcern: { j: true } },
    code: 2,
    embeddedOnly: true,
  },
];

const GENERIC_CASES: Case[] = [
  { name: 'a negative maxTimeMS', cmd: { find: 'c', maxTimeMS: -1 }, code: 2 },
  { name: 'a maxTimeMS that is not a number', cmd: { find: 'c', maxTimeMS: 'soon' }, code: 2 },
  { name: 'apiVersion 2', cmd: { ping: 1, apiVersion: '2' }, code: 322 },
  {
    name: 'apiStrict with a command outside API version 1',
    cmd: { buildInfo: 1, apiVersion: '1', apiStrict: true },
    code: 323,
  },
  { name: 'apiStrict without apiVersion', cmd: { ping: 1, apiStrict: true }, code: 4886600 },
  {
    name: 'a transaction',
    cmd: { find: 'c', txnNumber: Long.fromNumber(1), startTransaction: true, autocommit: false },
    code: 20,
    embeddedOnly: true,
  },
];

const UNKNOWN_FIELD_CASES: Case[] = [
  { name: 'find.foo', cmd: { find: 'c', foo: 1 }, code: 40415 },
  { name: 'aggregate.foo', cmd: { aggregate: 'c', pipeline: [], cursor: {}, foo: 1 }, code: 40415 },
  { name: 'count.foo', cmd: { count: 'c', foo: 1 }, code: 40415 },
  { name: 'count.let (count takes no let)', cmd: { count: 'c', let: { x: 1 } }, code: 40415 },
  { name: 'distinct.foo', cmd: { distinct: 'c', key: 's', foo: 1 }, code: 40415 },
  { name: 'insert.foo', cmd: { insert: 'c', documents: [{}], foo: 1 }, code: 40415 },
  {
    name: 'insert.let (insert takes no let)',
    cmd: { insert: 'c', documents: [{}], let: { x: 1 } },
    code: 40415,
  },
  {
    name: 'update.foo',
    cmd: { update: 'c', updates: [{ q: {}, u: { $set: { x: 1 } } }], foo: 1 },
    code: 40415,
  },
  {
    name: 'update.updates.foo',
    cmd: { update: 'c', updates: [{ q: {}, u: { $set: { x: 1 } }, foo: 1 }] },
    code: 40415,
  },
  {
    name: 'update.updates.sort (MongoDB 8.0)',
    cmd: { update: 'c', updates: [{ q: {}, u: { $set: { x: 1 } }, sort: { _id: 1 } }] },
    code: 40415,
  },
  {
    name: 'delete.deletes.foo',
    cmd: { delete: 'c', deletes: [{ q: { _id: 9 }, limit: 1, foo: 1 }] },
    code: 40415,
  },
  {
    name: 'findAndModify.foo',
    cmd: { findAndModify: 'c', query: { _id: 9 }, remove: true, foo: 1 },
    code: 40415,
  },
  {
    name: 'createIndexes.foo',
    cmd: { createIndexes: 'c', indexes: [{ key: { s: 1 }, name: 's_1' }], foo: 1 },
    code: 40415,
  },
  { name: 'listIndexes.foo', cmd: { listIndexes: 'c', foo: 1 }, code: 40415 },
  { name: 'listCollections.foo', cmd: { listCollections: 1, foo: 1 }, code: 40415 },
  { name: 'create.foo', cmd: { create: 'fresh_foo', foo: 1 }, code: 40415 },
  { name: 'collMod.foo', cmd: { collMod: 'c', foo: 1 }, code: 40415 },
  { name: 'drop.foo', cmd: { drop: 'never_made', foo: 1 }, code: 40415 },
  { name: 'explain.foo', cmd: { explain: { find: 'c' }, foo: 1 }, code: 40415 },
  { name: 'aggregate.cursor.foo', cmd: { aggregate: 'c', pipeline: [], cursor: { foo: 1 } }, code: 40415 },
  {
    name: '$merge.foo',
    cmd: { aggregate: 'c', pipeline: [{ $merge: { into: 'm', foo: 1 } }], cursor: {} },
    code: 40415,
  },
];

const FIND_CASES: Case[] = [
  { name: 'tailable on a collection that is not capped', cmd: { find: 'c', tailable: true }, code: 2 },
  { name: 'awaitData without tailable', cmd: { find: 'c', awaitData: true }, code: 9 },
  { name: 'a hint naming no index', cmd: { find: 'c', hint: 'nope_1' }, code: 2 },
  {
    name: 'count with a hint naming no index',
    cmd: { count: 'c', query: { n: 1 }, hint: { nope: 1 } },
    code: 2,
  },
  {
    name: 'aggregate with a hint naming no index',
    cmd: { aggregate: 'c', pipeline: [], cursor: {}, hint: 'nope_1' },
    code: 2,
  },
  { name: 'returnKey', cmd: { find: 'c', returnKey: true }, code: 238, embeddedOnly: true },
  { name: 'showRecordId', cmd: { find: 'c', showRecordId: true }, code: 238, embeddedOnly: true },
  { name: 'min', cmd: { find: 'c', min: { n: 1 }, hint: { n: 1 } }, code: 238, embeddedOnly: true },
  { name: 'ntoreturn', cmd: { find: 'c', ntoreturn: 1 }, code: 238, embeddedOnly: true },
];

const LANGUAGE_CASES: Case[] = [
  { name: 'an unknown query operator', cmd: { find: 'c', filter: { n: { $foo: 1 } } }, code: 2 },
  { name: 'an unknown top-level query operator', cmd: { find: 'c', filter: { $foo: 1 } }, code: 2 },
  { name: '$text without a text index', cmd: { find: 'c', filter: { $text: { $search: 'a' } } }, code: 27 },
  {
    name: '$near without a geospatial index',
    cmd: { find: 'c', filter: { loc: { $near: { $geometry: { type: 'Point', coordinates: [0, 0] } } } } },
    code: 291,
  },
  {
    name: '$geoWithin',
    cmd: { find: 'c', filter: { loc: { $geoWithin: { $center: [[0, 0], 1] } } } },
    code: 238,
    embeddedOnly: true,
  },
  {
    name: '$where (no server-side JavaScript)',
    cmd: { find: 'c', filter: { $where: 'true' } },
    code: 6108304,
    embeddedOnly: true,
  },
  { name: '$jsonSchema', cmd: { find: 'c', filter: { $jsonSchema: {} } }, code: 238, embeddedOnly: true },
  {
    name: 'an unknown update operator',
    cmd: { update: 'c', updates: [{ q: { _id: 1 }, u: { $foo: { n: 1 } } }] },
    code: 9,
  },
  { name: 'an unknown stage', cmd: { aggregate: 'c', pipeline: [{ $foo: {} }], cursor: {} }, code: 40324 },
  {
    name: 'an unknown expression',
    cmd: { aggregate: 'c', pipeline: [{ $project: { x: { $foo: 1 } } }], cursor: {} },
    code: 168,
  },
  {
    name: 'an expression MongoDB 7.0 does not have ($sigmoid)',
    cmd: { aggregate: 'c', pipeline: [{ $project: { x: { $sigmoid: '$n' } } }], cursor: {} },
    code: 168,
  },
  {
    name: 'an unknown group operator',
    cmd: { aggregate: 'c', pipeline: [{ $group: { _id: null, x: { $foo: '$n' } } }], cursor: {} },
    code: 15952,
  },
  {
    name: 'an unknown expression inside $expr',
    cmd: { find: 'c', filter: { $expr: { $foo: ['$n', 1] } } },
    code: 168,
  },
  {
    name: 'an unknown expression in an update pipeline',
    cmd: { update: 'c', updates: [{ q: { _id: 1 }, u: [{ $set: { x: { $foo: 1 } } }] }] },
    code: 168,
  },
  {
    name: '$function (no server-side JavaScript)',
    cmd: {
      aggregate: 'c',
      pipeline: [
        { $project: { x: { $function: { body: 'function() { return 1 }', args: [], lang: 'js' } } } },
      ],
      cursor: {},
    },
    code: 31264,
    embeddedOnly: true,
  },
  {
    name: '$accumulator (no server-side JavaScript)',
    cmd: { aggregate: 'c', pipeline: [{ $group: { _id: null, x: { $accumulator: {} } } }], cursor: {} },
    code: 31264,
    embeddedOnly: true,
  },
  {
    name: 'the $geoNear stage',
    cmd: { aggregate: 'c', pipeline: [{ $geoNear: {} }], cursor: {} },
    code: 238,
    embeddedOnly: true,
  },
  {
    name: 'the $collStats stage',
    cmd: { aggregate: 'c', pipeline: [{ $collStats: {} }], cursor: {} },
    code: 238,
    embeddedOnly: true,
  },
  {
    name: 'a collation with $group by a string field',
    cmd: {
      aggregate: 'c',
      pipeline: [{ $group: { _id: '$s' } }],
      cursor: {},
      collation: { locale: 'en', strength: 2 },
    },
    code: 238,
    embeddedOnly: true,
  },
  {
    name: '$toDecimal (the aggregation engine has no decimal type)',
    cmd: { aggregate: 'c', pipeline: [{ $project: { x: { $toDecimal: '$n' } } }], cursor: {} },
    code: 238,
    embeddedOnly: true,
  },
  {
    name: '$merge on fields without a unique index',
    cmd: { aggregate: 'c', pipeline: [{ $merge: { into: 'm', on: 's' } }], cursor: {} },
    code: 51183,
  },
  {
    name: '$merge with an unknown whenNotMatched',
    cmd: { aggregate: 'c', pipeline: [{ $merge: { into: 'm', whenNotMatched: 'bogus' } }], cursor: {} },
    code: 2,
  },
];

const DDL_CASES: Case[] = [
  {
    name: 'create.expireAfterSeconds without clustering',
    cmd: { create: 'fresh_exp', expireAfterSeconds: 10 },
    code: 72,
  },
  {
    name: 'an unknown index type',
    cmd: { createIndexes: 'c', indexes: [{ key: { s: 'bogus' }, name: 's_b' }] },
    code: 67,
  },
  {
    name: 'an unknown index option',
    cmd: { createIndexes: 'c', indexes: [{ key: { s: 1 }, name: 's_1', foo: 1 }] },
    code: 197,
  },
  {
    name: 'commitQuorum beyond the one member',
    cmd: { createIndexes: 'c', indexes: [{ key: { s: 1 }, name: 's_1' }], commitQuorum: 2 },
    code: 278,
  },
  {
    name: 'create.capped',
    cmd: { create: 'fresh_capped', capped: true, size: 4096 },
    code: 238,
    embeddedOnly: true,
  },
  {
    name: 'create.timeseries',
    cmd: { create: 'fresh_ts', timeseries: { timeField: 't' } },
    code: 238,
    embeddedOnly: true,
  },
  {
    name: 'a default collation on a collection',
    cmd: { create: 'fresh_coll', collation: { locale: 'en' } },
    code: 238,
    embeddedOnly: true,
  },
  {
    name: 'a text index',
    cmd: { createIndexes: 'c', indexes: [{ key: { s: 'text' }, name: 's_text' }] },
    code: 238,
    embeddedOnly: true,
  },
  {
    name: 'a 2dsphere index',
    cmd: { createIndexes: 'c', indexes: [{ key: { l: '2dsphere' }, name: 'l_2' }] },
    code: 238,
    embeddedOnly: true,
  },
  {
    name: 'a wildcard index',
    cmd: { createIndexes: 'c', indexes: [{ key: { '$**': 1 }, name: 'w' }] },
    code: 238,
    embeddedOnly: true,
  },
  {
    name: 'an index with a collation',
    cmd: { createIndexes: 'c', indexes: [{ key: { s: 1 }, name: 's_c', collation: { locale: 'en' } }] },
    code: 238,
    embeddedOnly: true,
  },
  {
    name: 'collMod.index',
    cmd: { collMod: 'c', index: { name: 'n_1', hidden: true } },
    code: 238,
    embeddedOnly: true,
  },
];

/** The command's error code, or its first write error's (a bad statement fails alone, as in MongoDB). */
async function codeOf(cmd: Document): Promise<number | 'ok'> {
  try {
    const reply = await t.db.command(cmd);
    const writeErrors = reply.writeErrors as Document[] | undefined;
    return writeErrors?.[0] ? (writeErrors[0].code as number) : 'ok';
  } catch (err) {
    if (err instanceof MongoServerError) return err.code as number;
    throw err;
  }
}

describe.each([
  ['readConcern', READ_CONCERN_CASES],
  ['writeConcern', WRITE_CONCERN_CASES],
  ['generic arguments', GENERIC_CASES],
  ['unknown fields', UNKNOWN_FIELD_CASES],
  ['find options', FIND_CASES],
  ['query and aggregation languages', LANGUAGE_CASES],
  ['collections and indexes', DDL_CASES],
])('%s refused with MongoDB codes', (_group, cases) => {
  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    if (c.embeddedOnly && !embedded()) return;
    expect(await codeOf(c.cmd)).toBe(c.code);
  });
});

describe('what is honoured is accepted', () => {
  it('read concerns local, available, majority and linearizable read the acknowledged state', async () => {
    for (const level of ['local', 'available', 'majority', 'linearizable']) {
      const reply = await t.db.command({ find: 'c', filter: {}, sort: { _id: 1 }, readConcern: { level } });
      expect((reply.cursor as Document).firstBatch).toHaveLength(2);
    }
  });

  it('a causally consistent session reads with afterClusterTime after its own write', async () => {
    const session = t.client.startSession({ causalConsistency: true });
    try {
      const coll = t.db.collection('causal');
      await coll.insertOne({ _id: 1 } as never, { session });
      expect(session.operationTime).toBeDefined();
      expect(await coll.find({}, { session }).toArray()).toEqual([{ _id: 1 }]);
      expect(await coll.countDocuments({}, { session })).toBe(1);
    } finally {
      await session.endSession();
    }
  });

  it("w: 'majority' is met; w: 2 and an unknown tag are reported beside the write, which is applied", async () => {
    const coll = t.db.collection('wc');
    await coll.insertOne({ _id: 1 } as never, { writeConcern: { w: 'majority', wtimeoutMS: 1000 } });
    const two = await coll
      .insertOne({ _id: 2 } as never, { writeConcern: { w: 2 } })
      .catch((e: unknown) => e);
    expect(two).toBeInstanceOf(MongoWriteConcernError);
    expect((two as MongoWriteConcernError).code).toBe(100);
    const tag = await coll
      .insertOne({ _id: 3 } as never, { writeConcern: { w: 'nosuchtag' } as never })
      .catch((e: unknown) => e);
    expect(tag).toBeInstanceOf(MongoWriteConcernError);
    expect((tag as MongoWriteConcernError).code).toBe(79);
    expect((await coll.find({}).toArray()).map((d) => d._id)).toEqual([1, 2, 3]);
  });

  it('batchSize 0 opens a cursor with an empty first batch; getMore returns the documents', async () => {
    for (const cmd of [
      { find: 'c', filter: {}, batchSize: 0 },
      { aggregate: 'c', pipeline: [], cursor: { batchSize: 0 } },
      { listIndexes: 'c', cursor: { batchSize: 0 } },
    ]) {
      const first = await t.db.command(cmd);
      const cursor = first.cursor as Document;
      expect(cursor.firstBatch).toEqual([]);
      const next = await t.db.command({ getMore: cursor.id, collection: 'c', batchSize: 100 });
      expect((next.cursor as Document).nextBatch).toHaveLength(2);
    }
  });

  it('noCursorTimeout, comment, oplogReplay and allowDiskUse are accepted on find', async () => {
    const reply = await t.db.command({
      find: 'c',
      filter: {},
      noCursorTimeout: true,
      comment: 'why',
      allowDiskUse: true,
      batchSize: 1,
    });
    const cursor = reply.cursor as Document;
    expect(cursor.firstBatch).toHaveLength(1);
    await t.db.command({ killCursors: 'c', cursors: [cursor.id] });
  });

  it('aggregate follows a hint naming an existing index, and countDocuments works with a collation', async () => {
    const reply = await t.db.command({
      aggregate: 'c',
      pipeline: [{ $match: { n: { $gte: 1 } } }],
      cursor: {},
      hint: { n: 1 },
    });
    expect((reply.cursor as Document).firstBatch).toHaveLength(2);
    expect(
      await t.db.collection('c').countDocuments({ s: 'b' }, { collation: { locale: 'en', strength: 2 } }),
    ).toBe(1);
  });

  it('listDatabases honours its filter', async () => {
    const other = t.client.db(`${t.dbName}_other`);
    await other.collection('x').insertOne({});
    try {
      const admin = t.client.db('admin');
      const all = await admin.command({ listDatabases: 1, nameOnly: true });
      expect((all.databases as Document[]).map((d) => d.name)).toContain(`${t.dbName}_other`);
      const reply = await admin.command({ listDatabases: 1, nameOnly: true, filter: { name: t.dbName } });
      expect(reply.databases).toEqual([{ name: t.dbName }]);
    } finally {
      await other.dropDatabase();
    }
  });
});

describe('maxTimeMS', () => {
  it('a read that ran longer than its maxTimeMS is answered MaxTimeMSExpired and its cursor closed', () => {
    const killed: number[] = [];
    const args = { command: 'find', maxTimeMS: 5, timed: true };
    const reply = { cursor: { id: Long.fromNumber(42), firstBatch: [] }, ok: 1 };
    expect(() => checkTimeLimit(args, Date.now() - 1000, reply, (id) => killed.push(id))).toThrow(
      expect.objectContaining({ code: 50, codeName: 'MaxTimeMSExpired' }),
    );
    expect(killed).toEqual([42]);
    expect(() => checkTimeLimit(args, Date.now(), reply, (id) => killed.push(id))).not.toThrow();
    expect(() => checkTimeLimit({ ...args, maxTimeMS: 0 }, 0, reply, () => {})).not.toThrow();
  });
});

const tempDir = useTempDirs('refusals');

describe('j: true with a data directory', () => {
  it('flushes the log to the device before the reply; without j the write is not flushed', async () => {
    const store = openDurableStore(tempDir());
    let syncs = 0;
    const counting = Object.assign(Object.create(store) as typeof store, {
      sync: () => {
        syncs++;
        store.sync();
      },
      append: (records: Parameters<typeof store.append>[0]) => store.append(records),
    });
    const engine = new Engine(counting);
    const cursors = new CursorManager();
    try {
      const loaded = store.load();
      engine.restore(loaded.snapshot, loaded.records);
      const ctx = {
        engine,
        cursors,
        server: { host: '127.0.0.1', port: 0, startedAt: new Date() },
        connectionId: 1,
      };
      const plain = await runCommand(
        { insert: 'docs', documents: [{ _id: 1 }], writeConcern: { w: 1 }, $db: 'app' },
        ctx,
      );
      expect(plain).toMatchObject({ ok: 1, n: 1 });
      expect(syncs).toBe(0);
      const journaled = await runCommand(
        { insert: 'docs', documents: [{ _id: 2 }], writeConcern: { w: 'majority', j: true }, $db: 'app' },
        ctx,
      );
      expect(journaled).toMatchObject({ ok: 1, n: 1 });
      expect(journaled.writeConcernError).toBeUndefined();
      expect(syncs).toBe(1);
    } finally {
      cursors.closeAll();
      store.close();
    }
  });
});
