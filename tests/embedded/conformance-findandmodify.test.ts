/**
 * findOneAndUpdate / findOneAndReplace / findOneAndDelete (the findAndModify command): the sort picks
 * which document, returnDocument picks the pre- or post-image, projection shapes it, upsert inserts.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ObjectId, type Collection, type Document } from 'mongodb';
import { openTestDb, type TestDb } from '../helpers/db.js';

/** Free-form test documents: _id of any BSON type, any update shape (the driver's schema types assume ObjectId ids). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

let t: TestDb;
let jobs: Collection<Loose>;

beforeEach(async () => {
  t = await openTestDb('conf_fam');
  jobs = t.db.collection('jobs');
  await jobs.insertMany([
    { _id: 1, state: 'queued', priority: 1, runAt: 10 },
    { _id: 2, state: 'queued', priority: 5, runAt: 30 },
    { _id: 3, state: 'queued', priority: 5, runAt: 20 },
    { _id: 4, state: 'done', priority: 9, runAt: 0 },
  ] as Document[]);
});

afterEach(async () => {
  await t.close();
});

describe('findOneAndUpdate', () => {
  it('updates the first document in sort order and returns the post-image with returnDocument after', async () => {
    const doc = await jobs.findOneAndUpdate(
      { state: 'queued' },
      { $set: { state: 'running' }, $inc: { attempts: 1 } },
      { sort: { priority: -1, runAt: 1 }, returnDocument: 'after' },
    );
    expect(doc).toEqual({ _id: 3, state: 'running', priority: 5, runAt: 20, attempts: 1 });
    expect(await jobs.countDocuments({ state: 'running' })).toBe(1);
  });

  it('returns the pre-image by default (returnDocument before)', async () => {
    const doc = await jobs.findOneAndUpdate(
      { state: 'queued' },
      { $set: { state: 'running' } },
      { sort: { runAt: 1 } },
    );
    expect(doc).toEqual({ _id: 1, state: 'queued', priority: 1, runAt: 10 });
    const explicit = await jobs.findOneAndUpdate(
      { state: 'queued' },
      { $set: { state: 'running' } },
      { sort: { runAt: 1 }, returnDocument: 'before' },
    );
    expect(explicit).toEqual({ _id: 3, state: 'queued', priority: 5, runAt: 20 });
  });

  it('applies a projection to the returned document', async () => {
    const doc = await jobs.findOneAndUpdate(
      { _id: 2 },
      { $set: { state: 'running' } },
      { projection: { state: 1 }, returnDocument: 'after' },
    );
    expect(doc).toEqual({ _id: 2, state: 'running' });
    const noId = await jobs.findOneAndUpdate(
      { _id: 2 },
      { $set: { state: 'x' } },
      { projection: { _id: 0, priority: 1 } },
    );
    expect(noId).toEqual({ priority: 5 });
  });

  it('returns null when nothing matches and upsert is off', async () => {
    expect(await jobs.findOneAndUpdate({ state: 'nope' }, { $set: { x: 1 } })).toBeNull();
    expect(await jobs.countDocuments({ x: 1 })).toBe(0);
  });

  it('upserts: null with returnDocument before, the new document with after', async () => {
    const before = await jobs.findOneAndUpdate({ _id: 10 }, { $set: { state: 'queued' } }, { upsert: true });
    expect(before).toBeNull();
    expect(await jobs.findOne({ _id: 10 })).toEqual({ _id: 10, state: 'queued' });

    const after = await jobs.findOneAndUpdate(
      { name: 'n' },
      { $setOnInsert: { state: 'new' } },
      { upsert: true, returnDocument: 'after' },
    );
    expect(after).toMatchObject({ name: 'n', state: 'new' });
    expect(after?._id).toBeInstanceOf(ObjectId);
  });

  it('reports lastErrorObject with includeResultMetadata', async () => {
    const hit = await jobs.findOneAndUpdate({ _id: 1 }, { $set: { y: 1 } }, { includeResultMetadata: true });
    expect(hit.ok).toBe(1);
    expect(hit.value).toEqual({ _id: 1, state: 'queued', priority: 1, runAt: 10 });
    expect(hit.lastErrorObject).toMatchObject({ n: 1, updatedExisting: true });

    const upserted = await jobs.findOneAndUpdate(
      { _id: 99 },
      { $set: { y: 1 } },
      { upsert: true, includeResultMetadata: true },
    );
    expect(upserted.value).toBeNull();
    expect(upserted.lastErrorObject).toMatchObject({ n: 1, updatedExisting: false, upserted: 99 });
  });
});

describe('findOneAndReplace and findOneAndDelete', () => {
  it('replaces the first document in sort order, keeping its _id', async () => {
    const doc = await jobs.findOneAndReplace(
      { state: 'queued' },
      { state: 'replaced' },
      { sort: { runAt: -1 }, returnDocument: 'after' },
    );
    expect(doc).toEqual({ _id: 2, state: 'replaced' });
  });

  it('upserts a replacement', async () => {
    const doc = await jobs.findOneAndReplace(
      { _id: 50 },
      { state: 'fresh' },
      { upsert: true, returnDocument: 'after' },
    );
    expect(doc).toEqual({ _id: 50, state: 'fresh' });
  });

  it('deletes the first document in sort order and returns it, projected', async () => {
    const doc = await jobs.findOneAndDelete(
      { state: 'queued' },
      { sort: { priority: -1, runAt: -1 }, projection: { runAt: 1 } },
    );
    expect(doc).toEqual({ _id: 2, runAt: 30 });
    expect(await jobs.findOne({ _id: 2 })).toBeNull();
    expect(await jobs.findOneAndDelete({ state: 'nope' })).toBeNull();
  });
});
