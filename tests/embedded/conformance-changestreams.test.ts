/**
 * Change streams as MongoDB 7.0 documents them: event shapes for insert/update/replace/delete,
 * fullDocument 'updateLookup', resuming after a token, an idle getMore bounded by maxAwaitTimeMS;
 * showExpandedEvents with its DDL events (create, createIndexes, dropIndexes, modify, rename) and
 * collectionUUID; updateDescription.disambiguatedPaths; the refusal (280) of a pipeline that changes an
 * event's _id; pre- and post-images (changeStreamPreAndPostImages, fullDocument 'whenAvailable' and
 * 'required', fullDocumentBeforeChange). Tests wait for events (bounded by a deadline), never for time
 * to pass.
 */
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Double,
  Int32,
  Long,
  MongoClient,
  MongoServerError,
  Timestamp,
  type Binary,
  type ChangeStream,
  type ChangeStreamDocument,
  type Collection,
  type Document,
} from 'mongodb';
import { openTestDb, testBackend, type TestDb } from '../helpers/db.js';
import { killAllEmbeddedProcesses, startEmbeddedProcess } from '../helpers/embeddedProcess.js';

/** Free-form test documents: _id of any BSON type, any update shape (the driver's schema types assume ObjectId ids). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

let t: TestDb;
let coll: Collection<Loose>;
const streams: ChangeStream[] = [];

beforeEach(async () => {
  t = await openTestDb('conf_cs');
  coll = t.db.collection('events');
  await t.db.createCollection('events');
});

afterEach(async () => {
  await Promise.allSettled(streams.splice(0).map((s) => s.close()));
  await t.close();
});

/** Opens a stream and makes sure its server-side cursor exists before the test writes anything. */
async function watch(
  pipeline: Document[] = [],
  options: Document = {},
  on: Loose = coll,
): Promise<ChangeStream> {
  const stream = on.watch(pipeline, { maxAwaitTimeMS: 100, ...options });
  streams.push(stream);
  expect(await stream.tryNext()).toBeNull();
  return stream;
}

/** The next event, waiting for one to arrive (bounded). */
async function nextEvent(stream: ChangeStream, deadlineMs = 10_000): Promise<Loose> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const event = await stream.tryNext();
    if (event) return event as ChangeStreamDocument<Document>;
    if (Date.now() > deadline) throw new Error('no change event arrived in time');
  }
}

/** The server error the next iteration fails with (bounded). */
async function nextError(stream: ChangeStream): Promise<MongoServerError> {
  const err = await nextEvent(stream).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(MongoServerError);
  return err as MongoServerError;
}

const hex = (u: unknown): string => Buffer.from((u as Binary).buffer).toString('hex');
const images = { changeStreamPreAndPostImages: { enabled: true } };

describe('change streams', () => {
  it('reports insert, update, replace and delete events with their documented fields', async () => {
    const stream = await watch();
    await coll.insertOne({ _id: 1, a: 1, b: 'x' } as Document);
    await coll.updateOne({ _id: 1 }, { $set: { a: 2 }, $unset: { b: '' } });
    await coll.replaceOne({ _id: 1 }, { c: 3 });
    await coll.deleteOne({ _id: 1 });

    const ns = { db: t.dbName, coll: 'events' };
    const insert = await nextEvent(stream);
    expect(insert).toMatchObject({
      operationType: 'insert',
      ns,
      documentKey: { _id: 1 },
      fullDocument: { _id: 1, a: 1, b: 'x' },
    });
    expect(insert._id).toBeTypeOf('object');
    expect((insert as { clusterTime?: unknown }).clusterTime).toBeInstanceOf(Timestamp);

    const update = await nextEvent(stream);
    expect(update).toMatchObject({ operationType: 'update', ns, documentKey: { _id: 1 } });
    const desc = (
      update as {
        updateDescription: { updatedFields: Document; removedFields: string[]; truncatedArrays?: unknown[] };
      }
    ).updateDescription;
    expect(desc.updatedFields).toEqual({ a: 2 });
    expect(desc.removedFields).toEqual(['b']);
    expect(desc.truncatedArrays ?? []).toEqual([]);
    expect((update as { fullDocument?: unknown }).fullDocument).toBeUndefined();

    const replace = await nextEvent(stream);
    expect(replace).toMatchObject({
      operationType: 'replace',
      ns,
      documentKey: { _id: 1 },
      fullDocument: { _id: 1, c: 3 },
    });

    const del = await nextEvent(stream);
    expect(del).toMatchObject({ operationType: 'delete', ns, documentKey: { _id: 1 } });
    expect((del as { fullDocument?: unknown }).fullDocument).toBeUndefined();
  });

  it("fullDocument 'updateLookup' attaches the current document to update events", async () => {
    const stream = await watch([], { fullDocument: 'updateLookup' });
    await coll.insertOne({ _id: 'k', n: 1 } as Document);
    await coll.updateOne({ _id: 'k' } as Document, { $inc: { n: 1 } });
    expect((await nextEvent(stream)).operationType).toBe('insert');
    const update = await nextEvent(stream);
    expect(update.operationType).toBe('update');
    expect((update as { fullDocument?: Document }).fullDocument).toEqual({ _id: 'k', n: 2 });
  });

  it('applies a $match pipeline to the events', async () => {
    const stream = await watch([{ $match: { operationType: 'delete' } }]);
    await coll.insertOne({ _id: 1 } as Document);
    await coll.deleteOne({ _id: 1 });
    const event = await nextEvent(stream);
    expect(event).toMatchObject({ operationType: 'delete', documentKey: { _id: 1 } });
  });

  it('resumes after a token and delivers only later events', async () => {
    const first = await watch();
    await coll.insertOne({ _id: 'a' } as Document);
    const seen = await nextEvent(first);
    expect(seen).toMatchObject({ operationType: 'insert', documentKey: { _id: 'a' } });
    const token = seen._id;
    await first.close();

    await coll.insertOne({ _id: 'b' } as Document);
    await coll.insertOne({ _id: 'c' } as Document);

    const resumed = coll.watch([], { resumeAfter: token, maxAwaitTimeMS: 100 });
    streams.push(resumed);
    expect(await nextEvent(resumed)).toMatchObject({ operationType: 'insert', documentKey: { _id: 'b' } });
    expect(await nextEvent(resumed)).toMatchObject({ operationType: 'insert', documentKey: { _id: 'c' } });
    expect(await resumed.tryNext()).toBeNull();
  });

  it('an idle stream with maxAwaitTimeMS returns an empty batch instead of blocking', async () => {
    const stream = await watch([], { maxAwaitTimeMS: 200 });
    expect(await stream.tryNext()).toBeNull();
    expect(await stream.tryNext()).toBeNull();
    expect(stream.closed).toBe(false);
    expect(stream.resumeToken).toBeTruthy();
  });
});

describe('showExpandedEvents: DDL events and collectionUUID', () => {
  it('reports create, createIndexes, modify, dropIndexes, rename and drop with their documented fields', async () => {
    const stream = await watch([], { showExpandedEvents: true }, t.db);
    await t.db.createCollection('ddl');
    const listed = await t.db.listCollections({ name: 'ddl' }).toArray();
    const ddl = t.db.collection<Loose>('ddl');
    await ddl.createIndex({ a: 1 });
    const validator = { a: { $exists: true } };
    await t.db.command({ collMod: 'ddl', validator });
    await ddl.dropIndex('a_1');
    await ddl.rename('ddl2');
    await t.db.dropCollection('ddl2');

    const ns = { db: t.dbName, coll: 'ddl' };
    const create = await nextEvent(stream);
    expect(create).toMatchObject({
      operationType: 'create',
      ns,
      operationDescription: { idIndex: { v: 2, key: { _id: 1 }, name: '_id_' } },
    });
    expect(create.documentKey).toBeUndefined();
    const uuid = hex(create.collectionUUID);
    expect((create.collectionUUID as Binary).sub_type).toBe(4);
    expect(hex((listed[0] as Loose).info.uuid)).toBe(uuid);

    const createIndexes = await nextEvent(stream);
    expect(createIndexes).toMatchObject({
      operationType: 'createIndexes',
      ns,
      operationDescription: { indexes: [{ v: 2, key: { a: 1 }, name: 'a_1' }] },
    });
    expect(hex(createIndexes.collectionUUID)).toBe(uuid);

    const modify = await nextEvent(stream);
    expect(modify).toMatchObject({ operationType: 'modify', ns, operationDescription: { validator } });
    expect(hex(modify.stateBeforeChange.collectionOptions.uuid)).toBe(uuid);

    const dropIndexes = await nextEvent(stream);
    expect(dropIndexes).toMatchObject({
      operationType: 'dropIndexes',
      ns,
      operationDescription: { indexes: [{ v: 2, key: { a: 1 }, name: 'a_1' }] },
    });

    const rename = await nextEvent(stream);
    const to = { db: t.dbName, coll: 'ddl2' };
    expect(rename).toMatchObject({ operationType: 'rename', ns, to, operationDescription: { to } });
    expect(rename.operationDescription.dropTarget).toBeUndefined();
    expect(hex(rename.collectionUUID)).toBe(uuid);

    // The UUID stays with the collection through the rename.
    const drop = await nextEvent(stream);
    expect(drop).toMatchObject({ operationType: 'drop', ns: to });
    expect(hex(drop.collectionUUID)).toBe(uuid);
  });

  it('a new collection of the same name gets a new UUID', async () => {
    const stream = await watch([], { showExpandedEvents: true }, t.db);
    await t.db.createCollection('again');
    await t.db.dropCollection('again');
    await t.db.createCollection('again');
    const first = await nextEvent(stream);
    await nextEvent(stream);
    const second = await nextEvent(stream);
    expect(second.operationType).toBe('create');
    expect(hex(second.collectionUUID)).not.toBe(hex(first.collectionUUID));
  });

  it('reports a view created in the database, without a collectionUUID', async () => {
    const stream = await watch([], { showExpandedEvents: true }, t.db);
    await t.db.createCollection('aView', { viewOn: 'events', pipeline: [{ $match: { a: 1 } }] });
    const create = await nextEvent(stream);
    expect(create).toMatchObject({
      operationType: 'create',
      ns: { db: t.dbName, coll: 'aView' },
      operationDescription: { viewOn: 'events', pipeline: [{ $match: { a: 1 } }] },
    });
    expect(create.collectionUUID).toBeUndefined();
  });

  it('without showExpandedEvents: no DDL events, no collectionUUID, no operationDescription', async () => {
    const stream = await watch([], {}, t.db);
    await t.db.createCollection('quiet');
    const quiet = t.db.collection<Loose>('quiet');
    await quiet.createIndex({ a: 1 });
    await t.db.command({ collMod: 'quiet', validator: {} });
    await quiet.insertOne({ _id: 1 });
    const insert = await nextEvent(stream);
    expect(insert).toMatchObject({ operationType: 'insert', ns: { db: t.dbName, coll: 'quiet' } });
    expect(insert.collectionUUID).toBeUndefined();
    await quiet.rename('quiet2');
    const rename = await nextEvent(stream);
    expect(rename).toMatchObject({ operationType: 'rename', to: { db: t.dbName, coll: 'quiet2' } });
    expect(rename.operationDescription).toBeUndefined();
  });

  it('a rename over an existing collection is one rename event naming the dropped one, and ends a stream on it', async () => {
    await t.db.createCollection('target');
    const targetUuid = hex(
      ((await t.db.listCollections({ name: 'target' }).toArray())[0] as Loose).info.uuid,
    );
    const onTarget = await watch([], { showExpandedEvents: true }, t.db.collection('target'));
    await coll.insertOne({ _id: 1 });
    await coll.rename('target', { dropTarget: true });
    const rename = await nextEvent(onTarget);
    expect(rename).toMatchObject({
      operationType: 'rename',
      ns: { db: t.dbName, coll: 'events' },
      to: { db: t.dbName, coll: 'target' },
    });
    expect(hex(rename.operationDescription.dropTarget)).toBe(targetUuid);
    expect((await nextEvent(onTarget)).operationType).toBe('invalidate');
  });

  it('createIndexes on a collection with documents is one event for all of its indexes', async () => {
    await coll.insertOne({ _id: 1, a: 1, b: 1 });
    const stream = await watch([], { showExpandedEvents: true });
    await coll.createIndexes([{ key: { a: 1 } }, { key: { b: 1 }, name: 'b_1', unique: true }]);
    const event = await nextEvent(stream);
    expect(event).toMatchObject({
      operationType: 'createIndexes',
      operationDescription: {
        indexes: [
          { v: 2, key: { a: 1 }, name: 'a_1' },
          { v: 2, key: { b: 1 }, name: 'b_1', unique: true },
        ],
      },
    });
  });
});

describe('updateDescription.disambiguatedPaths', () => {
  it('lists the steps of paths with numeric field names, array indexes as numbers', async () => {
    await coll.insertMany([
      { _id: 1, a: { '1': 1 } },
      { _id: 2, a: [{ '1': 1 }] },
      { _id: 3, '1': 1, b: [1, 2] },
    ]);
    const stream = await watch([], { showExpandedEvents: true });
    await coll.updateOne({ _id: 1 }, { $set: { 'a.1': 2 } });
    await coll.updateOne({ _id: 2 }, { $set: { 'a.0.1': 2 } });
    await coll.updateOne({ _id: 3 }, { $set: { '1': 2, 'b.1': 3 } });

    const first = await nextEvent(stream);
    expect(first.updateDescription).toMatchObject({
      updatedFields: { 'a.1': 2 },
      disambiguatedPaths: { 'a.1': ['a', '1'] },
    });
    const second = await nextEvent(stream);
    expect(second.updateDescription.updatedFields).toEqual({ 'a.0.1': 2 });
    expect(second.updateDescription.disambiguatedPaths).toEqual({ 'a.0.1': ['a', 0, '1'] });
    // A numeric name at the top level, or an array index alone, is not ambiguous.
    const third = await nextEvent(stream);
    expect(third.updateDescription.updatedFields).toEqual({ '1': 2, 'b.1': 3 });
    expect(third.updateDescription.disambiguatedPaths).toEqual({});
  });

  it('is absent without showExpandedEvents', async () => {
    await coll.insertOne({ _id: 1, a: { '1': 1 } });
    const stream = await watch();
    await coll.updateOne({ _id: 1 }, { $set: { 'a.1': 2 } });
    const event = await nextEvent(stream);
    expect(event.updateDescription.updatedFields).toEqual({ 'a.1': 2 });
    expect(event.updateDescription.disambiguatedPaths).toBeUndefined();
  });
});

describe('a pipeline that changes the resume token (_id)', () => {
  it('fails the batch that would return the event with ChangeStreamFatalError (280), not the aggregate', async () => {
    const stream = await watch([{ $project: { _id: 0 } }]);
    await coll.insertOne({ _id: 1 });
    const err = await nextError(stream);
    expect(err.code).toBe(280);
    expect(err.codeName).toBe('ChangeStreamFatalError');
    expect(err.hasErrorLabel('NonResumableChangeStreamError')).toBe(true);
  });

  it('checks only the events the pipeline returns', async () => {
    const stream = await watch([{ $match: { operationType: 'delete' } }, { $set: { '_id.extra': 1 } }]);
    await coll.insertOne({ _id: 1 });
    expect(await stream.tryNext()).toBeNull();
    await coll.deleteOne({ _id: 1 });
    expect((await nextError(stream)).code).toBe(280);
  });

  it('kills the cursor: a later getMore finds no cursor', async () => {
    const reply = await t.db.command({
      aggregate: 'events',
      pipeline: [{ $changeStream: {} }, { $unset: '_id' }],
      cursor: {},
    });
    const id = (reply.cursor as Document).id;
    await coll.insertOne({ _id: 1 });
    const getMore = () => t.db.command({ getMore: id, collection: 'events', maxTimeMS: 5000 });
    await expect(getMore()).rejects.toMatchObject({ code: 280 });
    await expect(getMore()).rejects.toMatchObject({ code: 43 });
  });
});

describe('a pipeline over the events', () => {
  it('each stream gets its own pipeline view of the same change, the others untouched', async () => {
    const picked = await watch([
      { $match: { operationType: 'update', 'updateDescription.updatedFields.n': { $gt: new Long(5) } } },
      { $project: { operationType: 1, 'updateDescription.updatedFields.n': 1 } },
    ]);
    const rewritten = await watch([{ $addFields: { 'updateDescription.updatedFields.n': 'rewritten' } }]);
    const plain = await watch();
    await coll.insertOne({ _id: 1, n: 1, s: 'x' });
    await coll.updateOne({ _id: 1 }, { $set: { n: new Double(6.5), s: 'y' } });
    await coll.updateOne({ _id: 1 }, { $set: { n: new Int32(3) } });
    expect(await nextEvent(picked)).toEqual({
      _id: expect.anything(),
      operationType: 'update',
      updateDescription: { updatedFields: { n: 6.5 } },
    });
    expect((await nextEvent(rewritten)).operationType).toBe('insert');
    expect((await nextEvent(rewritten)).updateDescription.updatedFields).toEqual({ n: 'rewritten', s: 'y' });
    expect((await nextEvent(plain)).operationType).toBe('insert');
    expect((await nextEvent(plain)).updateDescription.updatedFields).toEqual({ n: 6.5, s: 'y' });
    expect((await nextEvent(plain)).updateDescription.updatedFields).toEqual({ n: 3 });
    expect((await nextEvent(rewritten)).updateDescription.updatedFields).toEqual({ n: 'rewritten' });
    // n: 3 is not above 5: the first stream has nothing more.
    expect(await picked.tryNext()).toBeNull();
  });

  it('refuses a $match with an unknown operator when the stream is opened', async () => {
    const err = await t.db
      .command({
        aggregate: 'events',
        pipeline: [{ $changeStream: {} }, { $match: { a: { $nope: 1 } } }],
        cursor: {},
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MongoServerError);
    expect((err as MongoServerError).code).toBe(2);
  });
});

describe('pre- and post-images', () => {
  it('changeStreamPreAndPostImages is a collection option, set by create and collMod', async () => {
    await t.db.createCollection('img', images);
    const options = async () =>
      ((await t.db.listCollections({ name: 'img' }).toArray())[0] as Loose).options as Document;
    expect(await options()).toMatchObject(images);
    await t.db.command({ collMod: 'img', changeStreamPreAndPostImages: { enabled: false } });
    expect((await options()).changeStreamPreAndPostImages).toBeUndefined();
    await t.db.command({ collMod: 'img', ...images });
    expect(await options()).toMatchObject(images);
  });

  it('refuses a malformed changeStreamPreAndPostImages', async () => {
    const collMod = (value: unknown) =>
      t.db.command({ collMod: 'events', changeStreamPreAndPostImages: value }).catch((e: unknown) => e);
    expect(await collMod(true)).toMatchObject({ code: 14 });
    expect(await collMod({})).toMatchObject({ code: 40414 });
    expect(await collMod({ enabled: 'yes' })).toMatchObject({ code: 14 });
    expect(await collMod({ enabled: true, extra: 1 })).toMatchObject({ code: 40415 });
  });

  it('whenAvailable: the document before and after each change, as it was then', async () => {
    await t.db.command({ collMod: 'events', ...images });
    const stream = await watch([], {
      fullDocument: 'whenAvailable',
      fullDocumentBeforeChange: 'whenAvailable',
    });
    await coll.insertOne({ _id: 1, n: 1 });
    await coll.updateOne({ _id: 1 }, { $inc: { n: 1 } });
    await coll.updateOne({ _id: 1 }, { $inc: { n: 1 } });
    await coll.replaceOne({ _id: 1 }, { m: 1 });
    await coll.deleteOne({ _id: 1 });

    const insert = await nextEvent(stream);
    expect(insert.fullDocument).toEqual({ _id: 1, n: 1 });
    expect('fullDocumentBeforeChange' in insert).toBe(false);
    const first = await nextEvent(stream);
    expect(first).toMatchObject({
      operationType: 'update',
      fullDocument: { _id: 1, n: 2 },
      fullDocumentBeforeChange: { _id: 1, n: 1 },
    });
    const second = await nextEvent(stream);
    expect(second).toMatchObject({
      fullDocument: { _id: 1, n: 3 },
      fullDocumentBeforeChange: { _id: 1, n: 2 },
    });
    const replace = await nextEvent(stream);
    expect(replace).toMatchObject({
      operationType: 'replace',
      fullDocument: { _id: 1, m: 1 },
      fullDocumentBeforeChange: { _id: 1, n: 3 },
    });
    const del = await nextEvent(stream);
    expect(del).toMatchObject({ operationType: 'delete', fullDocumentBeforeChange: { _id: 1, m: 1 } });
  });

  it('whenAvailable without images: null, while updateLookup reads the document as it is now', async () => {
    await coll.insertOne({ _id: 1, n: 1 });
    const available = await watch([], {
      fullDocument: 'whenAvailable',
      fullDocumentBeforeChange: 'whenAvailable',
    });
    const lookup = await watch([], { fullDocument: 'updateLookup' });
    await coll.updateOne({ _id: 1 }, { $inc: { n: 1 } });
    await coll.updateOne({ _id: 1 }, { $inc: { n: 1 } });
    await coll.deleteOne({ _id: 1 });

    const update = await nextEvent(available);
    expect(update.operationType).toBe('update');
    expect(update.fullDocument).toBeNull();
    expect(update.fullDocumentBeforeChange).toBeNull();
    await nextEvent(available);
    expect(await nextEvent(available)).toMatchObject({
      operationType: 'delete',
      fullDocumentBeforeChange: null,
    });
    // Read after the delete: the document is gone.
    expect((await nextEvent(lookup)).fullDocument).toBeNull();
  });

  it('an image is kept only for changes made while the option was on', async () => {
    await coll.insertOne({ _id: 1, n: 1 });
    const stream = await watch([], { fullDocumentBeforeChange: 'whenAvailable' });
    await coll.updateOne({ _id: 1 }, { $inc: { n: 1 } });
    await t.db.command({ collMod: 'events', ...images });
    await coll.updateOne({ _id: 1 }, { $inc: { n: 1 } });
    await t.db.command({ collMod: 'events', changeStreamPreAndPostImages: { enabled: false } });
    await coll.updateOne({ _id: 1 }, { $inc: { n: 1 } });
    expect((await nextEvent(stream)).fullDocumentBeforeChange).toBeNull();
    expect((await nextEvent(stream)).fullDocumentBeforeChange).toEqual({ _id: 1, n: 2 });
    expect((await nextEvent(stream)).fullDocumentBeforeChange).toBeNull();
  });

  it.each([
    ['fullDocument', 'required'],
    ['fullDocumentBeforeChange', 'required'],
  ])('%s %s without an image fails with NoMatchingDocument (47)', async (option, mode) => {
    await coll.insertOne({ _id: 1, n: 1 });
    const stream = await watch([], { [option]: mode });
    await coll.updateOne({ _id: 1 }, { $inc: { n: 1 } });
    const err = await nextError(stream);
    expect(err.code).toBe(47);
    expect(err.codeName).toBe('NoMatchingDocument');
  });

  it('required with images: every update, replace and delete carries them', async () => {
    await t.db.command({ collMod: 'events', ...images });
    await coll.insertOne({ _id: 1, n: 1 });
    const stream = await watch([], { fullDocument: 'required', fullDocumentBeforeChange: 'required' });
    await coll.updateOne({ _id: 1 }, { $inc: { n: 1 } });
    await coll.deleteOne({ _id: 1 });
    expect(await nextEvent(stream)).toMatchObject({
      fullDocument: { _id: 1, n: 2 },
      fullDocumentBeforeChange: { _id: 1, n: 1 },
    });
    expect(await nextEvent(stream)).toMatchObject({
      operationType: 'delete',
      fullDocumentBeforeChange: { _id: 1, n: 2 },
    });
  });

  it('refuses unknown fullDocument and fullDocumentBeforeChange modes', async () => {
    const open = (spec: Document) =>
      t.db
        .command({ aggregate: 'events', pipeline: [{ $changeStream: spec }], cursor: {} })
        .catch((e: unknown) => e);
    expect(await open({ fullDocument: 'always' })).toMatchObject({ code: 2 });
    expect(await open({ fullDocumentBeforeChange: 'always' })).toMatchObject({ code: 2 });
  });
});

describe('change streams on a durable embedded server, across restarts', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    await killAllEmbeddedProcesses();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it.skipIf(testBackend() !== 'embedded')(
    'a collection keeps its UUID and its pre- and post-images option through SIGKILL (log) and SIGTERM (snapshot) restarts',
    async () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'jobd-cs-'));
      dirs.push(dataDir);
      let server = await startEmbeddedProcess({ dataDir });
      const uuidOf = async (client: MongoClient) =>
        hex(((await client.db('app').listCollections({ name: 'jobs' }).toArray())[0] as Loose).info.uuid);

      let client = new MongoClient(server.uri, { serverSelectionTimeoutMS: 10_000 });
      await client.connect();
      await client.db('app').createCollection('jobs', images);
      await client.db('app').collection<Loose>('jobs').insertOne({ _id: 1, n: 1 });
      const uuid = await uuidOf(client);
      await client.close();

      for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
        await server.stop(signal);
        server = await startEmbeddedProcess({ dataDir, port: server.port });
        client = new MongoClient(server.uri, { serverSelectionTimeoutMS: 10_000 });
        await client.connect();
        expect(await uuidOf(client)).toBe(uuid);
        const jobs = client.db('app').collection<Loose>('jobs');
        const stream = jobs.watch([], {
          maxAwaitTimeMS: 100,
          showExpandedEvents: true,
          fullDocumentBeforeChange: 'required',
        });
        expect(await stream.tryNext()).toBeNull();
        await jobs.updateOne({ _id: 1 }, { $inc: { n: 1 } });
        const event = await nextEvent(stream);
        expect(hex(event.collectionUUID)).toBe(uuid);
        expect(event.fullDocumentBeforeChange).toMatchObject({ _id: 1 });
        await stream.close();
        await client.close();
      }
    },
  );
});

describe('change streams on views', () => {
  it('are refused with CommandNotSupportedOnView (166)', async () => {
    await t.db.createCollection('v', { viewOn: 'events', pipeline: [] });
    const err = await t.db
      .command({ aggregate: 'v', pipeline: [{ $changeStream: {} }], cursor: {} })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 166 });
  });
});
