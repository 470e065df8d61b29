/**
 * Change streams on a collection: event shapes for insert/update/replace/delete, fullDocument
 * 'updateLookup', resuming after a token, and an idle getMore bounded by maxAwaitTimeMS.
 * Tests wait for events (bounded by a deadline), never for time to pass.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  Timestamp,
  type ChangeStream,
  type ChangeStreamDocument,
  type Collection,
  type Document,
} from 'mongodb';
import { openTestDb, type TestDb } from '../helpers/db.js';

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
async function watch(pipeline: Document[] = [], options: Document = {}): Promise<ChangeStream> {
  const stream = coll.watch(pipeline, { maxAwaitTimeMS: 100, ...options });
  streams.push(stream);
  expect(await stream.tryNext()).toBeNull();
  return stream;
}

/** The next event, waiting for one to arrive (bounded). */
async function nextEvent(stream: ChangeStream, deadlineMs = 10_000): Promise<ChangeStreamDocument<Document>> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const event = await stream.tryNext();
    if (event) return event as ChangeStreamDocument<Document>;
    if (Date.now() > deadline) throw new Error('no change event arrived in time');
  }
}

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
