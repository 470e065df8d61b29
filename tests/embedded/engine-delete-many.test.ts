/**
 * A delete of many documents leaves every index exact: each index drops the deleted documents' entries
 * (in its own key order, a leaf's keys at a time) and keeps the others. Covered: compound, descending,
 * multikey, partial and unique indexes, keys of types held as strings and of types held as arrays
 * (objects), and an index none of the deleted documents is in. Each index is read through a hint over
 * its whole range and compared with what a collection scan returns, and its entry count (explain's
 * keysExamined) with the entries the remaining documents make, so a lost entry shows as a wrong answer
 * and a stale one as a count too high; a unique key whose document was deleted can be used again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Collection, Document, IndexDescription } from 'mongodb';
import { openTestDb, type TestDb } from '../helpers/db.js';

let t: TestDb;
let coll: Collection<Document>;

const INDEXES: (IndexDescription & { name: string })[] = [
  { key: { state: 1, at: 1, _id: 1 }, name: 'state_at' },
  { key: { at: -1 }, name: 'at_desc' },
  { key: { tags: 1 }, name: 'tags' },
  { key: { wf: 1, state: 1 }, name: 'wf', partialFilterExpression: { wf: { $exists: true } } },
  { key: { code: 1 }, name: 'code', unique: true },
  { key: { meta: 1 }, name: 'meta' },
  { key: { never: 1 }, name: 'never', partialFilterExpression: { never: { $exists: true } } },
];

function doc(n: number): Document {
  return {
    _id: n % 2 === 0 ? `j${String(n).padStart(5, '0')}` : n,
    state: ['done', 'failed', 'queued'][n % 3],
    at: new Date(1_700_000_000_000 + ((n * 7919) % 1000) * 1000),
    tags: n % 4 === 0 ? [`t${n % 5}`, `t${n % 7}`] : `t${n % 5}`,
    ...(n % 5 === 0 ? { wf: `w${n % 3}` } : {}),
    code: `c${n}`,
    meta: { n: n % 11 },
  };
}

beforeAll(async () => {
  t = await openTestDb('delete_many');
  coll = t.db.collection('docs');
  await coll.createIndexes(INDEXES);
  await coll.insertMany(Array.from({ length: 900 }, (_, n) => doc(n)));
});

afterAll(async () => {
  await t?.close();
});

const key = (d: Document): string => JSON.stringify(d._id);

/** Every index, read whole through its hint, returns exactly the documents a collection scan returns. */
async function expectIndexesExact(): Promise<void> {
  const docs = await coll.find({}, { hint: { $natural: 1 } }).toArray();
  const all = docs.map(key).sort();
  const tagEntries = docs.reduce((n, d) => n + (Array.isArray(d.tags) ? new Set(d.tags).size : 1), 0);
  for (const index of INDEXES) {
    if (index.partialFilterExpression) continue;
    const viaIndex = await coll.find({}, { hint: index.name, projection: { _id: 1 } }).toArray();
    // A multikey index holds a document once per element: the set of documents is what counts.
    expect([...new Set(viaIndex.map(key))].sort(), index.name).toEqual(all);
    const stats = (await coll.find({}, { hint: index.name }).explain('executionStats')).executionStats;
    expect(stats.totalKeysExamined, index.name).toBe(index.name === 'tags' ? tagEntries : all.length);
  }
  const wf = (await coll.find({ wf: { $exists: true } }, { hint: { $natural: 1 } }).toArray())
    .map(key)
    .sort();
  const wfViaIndex = await coll
    .find({ wf: { $exists: true } }, { hint: 'wf', projection: { _id: 1 } })
    .toArray();
  expect(wfViaIndex.map(key).sort()).toEqual(wf);
}

describe('deleting many documents', () => {
  it('keeps every index exact after deletes of scattered and of contiguous documents', async () => {
    // Scattered in every index's order (and a few absent from the tags index's arrays).
    const scattered = await coll.deleteMany({ 'meta.n': { $in: [0, 3, 4, 9] } });
    expect(scattered.deletedCount).toBeGreaterThan(250);
    await expectIndexesExact();
    // Contiguous in one index's order (a run of whole leaves of state_at).
    const run = await coll.deleteMany({ state: 'done', at: { $lt: new Date(1_700_000_600_000) } });
    expect(run.deletedCount).toBeGreaterThan(50);
    await expectIndexesExact();
    expect(await coll.countDocuments({ 'meta.n': 3 })).toBe(0);
    expect(await coll.countDocuments({ state: 'done', at: { $lt: new Date(1_700_000_600_000) } })).toBe(0);
  });

  it("frees a deleted document's unique key and empties every index when all go", async () => {
    const victim = await coll.findOne({}, { sort: { code: 1 } });
    await coll.deleteMany({ code: { $in: [victim!.code, 'c-absent'] } });
    await coll.insertOne({ ...doc(5000), code: victim!.code });
    expect(await coll.countDocuments({ code: victim!.code }, { hint: 'code' })).toBe(1);
    const left = await coll.countDocuments({});
    expect((await coll.deleteMany({})).deletedCount).toBe(left);
    for (const index of INDEXES) {
      if (index.partialFilterExpression) continue;
      expect(await coll.find({}, { hint: index.name }).toArray(), index.name).toEqual([]);
    }
    await coll.insertMany([doc(1), doc(2)]);
    await expectIndexesExact();
  });
});
