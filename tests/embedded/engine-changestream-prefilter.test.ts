/**
 * A change stream whose pipeline starts with a $match skips, without rendering them, the changes that
 * $match certainly drops (see changeStreamPrefilter). Each stream here is paired with one whose
 * pipeline starts with an empty $match (no prefilter: every change is rendered and matched) and both
 * must report the same changes, over inserts, updates, replaces and deletes whose watched fields are
 * missing, null, arrays, numbers, embedded documents, unchanged, set to the value they had, unset
 * (at the top level or below), or changed through a dotted path; and a drop still invalidates a stream whose $match drops it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChangeStream, Collection, Document } from 'mongodb';
import { openTestDb, type TestDb } from '../helpers/db.js';
import { compilePrefilter } from '../../src/embedded/changeStreamPrefilter.js';
import type { ChangeEvent } from '../../src/embedded/changeLog.js';

let t: TestDb;
let n = 0;

beforeAll(async () => {
  t = await openTestDb('cs_prefilter');
});

afterAll(async () => {
  await t?.close();
});

/** The daemon's claim watcher's $match (src/store/watch.ts). */
const CLAIMABLE = {
  $or: [
    { operationType: 'insert', 'fullDocument.state': { $in: ['queued', 'retrying'] } },
    { operationType: 'update', 'updateDescription.updatedFields.state': { $in: ['queued', 'retrying'] } },
    { operationType: 'replace', 'fullDocument.state': { $in: ['queued', 'retrying'] } },
  ],
};

const FILTERS: Document[] = [
  CLAIMABLE,
  { operationType: 'update', 'updateDescription.updatedFields.state': 'queued' },
  { 'updateDescription.updatedFields.state': { $eq: 'running' } },
  { 'fullDocument.state': { $in: ['queued'] } },
  { 'documentKey._id': 'b' },
  { operationType: { $in: ['delete', 'insert'] } },
  { $and: [{ operationType: 'update' }, { 'updateDescription.updatedFields.n': 'x' }], other: { $ne: 1 } },
  { $or: [{ operationType: 'delete' }, { 'fullDocument.state': 'queued' }] },
  { 'updateDescription.updatedFields.state': { $in: ['queued', 'retrying'] }, $comment: 'kept' },
  // dataset-status's watcher (src/store/datasets.ts) between dataset jobs.
  {
    $or: [
      { operationType: 'insert', 'fullDocument.state': { $type: 'string' } },
      { operationType: 'update', 'updateDescription.removedFields': 'state' },
    ],
  },
  { 'updateDescription.removedFields': { $in: ['other', 'n'] } },
];

/** The writes: every kind of change to a watched field the prefilter reads. */
async function writes(coll: Collection<Document>): Promise<void> {
  await coll.insertMany([
    { _id: 'a' as never, state: 'queued' },
    { _id: 'b' as never, state: 'running' },
    { _id: 'c' as never },
    { _id: 'd' as never, state: null },
    { _id: 'e' as never, state: ['queued'] },
    { _id: 'f' as never, state: 5 },
    { _id: 'g' as never, state: { s: 'queued' } },
  ]);
  await coll.updateOne({ _id: 'b' as never }, { $set: { state: 'queued' } });
  await coll.updateOne({ _id: 'b' as never }, { $set: { state: 'queued', other: 1 } }); // state unchanged
  await coll.updateOne({ _id: 'a' as never }, { $set: { state: 'running' } });
  await coll.updateOne({ _id: 'a' as never }, { $set: { n: 'x' } });
  await coll.updateOne({ _id: 'c' as never }, { $set: { state: 'retrying' } }); // new field
  await coll.updateOne({ _id: 'd' as never }, { $set: { state: 'queued' } }); // from null
  await coll.updateOne({ _id: 'e' as never }, { $set: { state: ['retrying'] } }); // array to array
  await coll.updateOne({ _id: 'f' as never }, { $set: { state: ['queued', 'x'] } }); // number to array
  await coll.updateOne({ _id: 'g' as never }, { $set: { 'state.s': 'retrying' } }); // dotted path
  await coll.updateOne({ _id: 'g' as never }, { $set: { state: 'queued' } }); // document to string
  await coll.updateOne({ _id: 'c' as never }, { $unset: { state: '' } });
  await coll.updateOne({ _id: 'b' as never }, { $unset: { other: '', missing: '' } });
  await coll.updateOne({ _id: 'g' as never }, { $set: { n: { state: 1 } } });
  await coll.updateOne({ _id: 'g' as never }, { $unset: { 'n.state': '' } }); // a nested removal
  await coll.updateMany({ _id: { $in: ['a', 'b'] } as never }, { $set: { state: 'retrying', n: 'x' } });
  await coll.updateOne({ _id: 'a' as never }, [{ $set: { state: 'queued' } }]); // pipeline update
  await coll.replaceOne({ _id: 'b' as never }, { state: 'queued' });
  await coll.replaceOne({ _id: 'd' as never }, { state: 'done' });
  await coll.deleteOne({ _id: 'e' as never });
  await coll.insertOne({ _id: 'z' as never, state: 'queued' }); // the last change: both streams end on it
}

/** What a stream reported: enough to tell any two different changes apart. */
function summary(c: Document): Document {
  return {
    op: c.operationType,
    id: c.documentKey?._id,
    full: c.fullDocument ?? null,
    desc: c.updateDescription ?? null,
  };
}

async function drain(stream: ChangeStream<Document>): Promise<Document[]> {
  const seen: Document[] = [];
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const c = (await stream.tryNext()) as Document | null;
    if (!c) continue;
    seen.push(summary(c));
    if (c.operationType === 'insert' && c.documentKey?._id === 'z') return seen;
  }
  return seen;
}

describe('changes a stream $match certainly drops are skipped unrendered', () => {
  for (const [i, filter] of FILTERS.entries()) {
    for (const fullDocument of ['default', 'updateLookup'] as const) {
      it(`filter ${i} (fullDocument ${fullDocument}) reports what the unfiltered rendering reports`, async () => {
        const coll = t.db.collection<Document>(`c${++n}`);
        // The last insert (z) goes through both: each stream is read up to it.
        const withEnd = { $or: [filter, { 'documentKey._id': 'z' }] };
        const fast = coll.watch([{ $match: withEnd }], { fullDocument, maxAwaitTimeMS: 100 });
        const slow = coll.watch([{ $match: {} }, { $match: withEnd }], { fullDocument, maxAwaitTimeMS: 100 });
        try {
          await fast.tryNext();
          await slow.tryNext();
          await writes(coll);
          const [a, b] = [await drain(fast), await drain(slow)];
          expect(b.at(-1)).toMatchObject({ op: 'insert', id: 'z' });
          expect(a).toEqual(b);
        } finally {
          await fast.close();
          await slow.close();
        }
      });
    }
  }

  it('a drop still invalidates a stream whose $match drops every change', async () => {
    const coll = t.db.collection<Document>(`c${++n}`);
    await coll.insertOne({ _id: 1 as never });
    const stream = coll.watch([{ $match: { operationType: 'insert', 'fullDocument.state': 'never' } }], {
      maxAwaitTimeMS: 100,
    });
    try {
      await stream.tryNext();
      await coll.updateOne({ _id: 1 as never }, { $set: { state: 'x' } });
      await coll.drop();
      const deadline = Date.now() + 10_000;
      while (!stream.closed && Date.now() < deadline) await stream.tryNext().catch(() => null);
      expect(stream.closed).toBe(true);
    } finally {
      await stream.close();
    }
  });
});

describe('compilePrefilter', () => {
  const base = { seq: 1, wallMs: 0, db: 'd', coll: 'jobs', documentKey: { _id: 'j' } };
  const claimed: ChangeEvent = {
    ...base,
    operationType: 'update',
    before: { _id: 'j', state: 'queued', attempts: 0 },
    fullDocument: { _id: 'j', state: 'running', attempts: 1 },
  };
  const requeued: ChangeEvent = {
    ...claimed,
    before: claimed.fullDocument,
    fullDocument: { _id: 'j', state: 'queued', attempts: 1 },
  };

  it("drops a claim's and a completion's update unrendered under the claim watcher's $match", () => {
    const p = compilePrefilter(CLAIMABLE);
    expect(p).toBeDefined();
    expect(p!(claimed)).toBe(true);
    expect(p!({ ...claimed, fullDocument: { _id: 'j', state: 'completed', attempts: 1 } })).toBe(true);
    expect(p!(requeued)).toBe(false);
    expect(p!({ ...base, operationType: 'insert', fullDocument: { _id: 'j', state: 'queued' } })).toBe(false);
    expect(p!({ ...base, operationType: 'delete' })).toBe(true);
  });

  it("drops a claim's update unrendered under dataset-status's $match between dataset jobs", () => {
    const p = compilePrefilter({
      $or: [
        { operationType: 'insert', 'fullDocument.datasetUuid': { $type: 'string' } },
        { operationType: 'update', 'updateDescription.removedFields': 'datasetStatusFinal' },
      ],
    })!;
    expect(p(claimed)).toBe(true);
    expect(p({ ...base, operationType: 'insert', fullDocument: { _id: 'j' } })).toBe(true);
    expect(p({ ...base, operationType: 'insert', fullDocument: { _id: 'j', datasetUuid: 'u' } })).toBe(false);
    const final = { ...claimed.before, datasetStatusFinal: true };
    expect(p({ ...claimed, before: final })).toBe(false);
  });

  it('answers "maybe" for anything it cannot decide', () => {
    expect(compilePrefilter({})).toBeUndefined();
    expect(compilePrefilter({ 'fullDocument.state': { $ne: 'x' } })).toBeUndefined();
    expect(compilePrefilter({ $or: [{ operationType: 'insert' }, { 'ns.coll': 'jobs' }] })).toBeUndefined();
    expect(compilePrefilter({ 'updateDescription.updatedFields.a.b': 'x' })).toBeUndefined();
    expect(compilePrefilter({ operationType: /upd/ })).toBeUndefined();
    const p = compilePrefilter({ 'updateDescription.updatedFields.state': { $in: ['queued'] } })!;
    // An array, a number or a document may match (or fail) in ways left to the $match itself.
    for (const state of [['queued'], 5, { s: 1 }, null])
      expect(p({ ...claimed, fullDocument: { _id: 'j', state } })).toBe(false);
  });
});
