/**
 * A change stream's waiting getMore is woken only by an event it may answer with: one in its scope
 * that its leading $match does not certainly drop (or one that ends it). Out-of-scope writes and
 * changes the $match drops no longer wake it only for it to find nothing and wait again; it still
 * answers at once with the first event it wants, and its position moves past everything before.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Document, Timestamp } from 'mongodb';
import { ChangeLog, type ChangeEvent } from '../../src/embedded/changeLog.js';
import { openTestDb, type TestDb } from '../helpers/db.js';

function event(seq: number, coll: string): ChangeEvent {
  return { seq, operationType: 'insert', wallMs: 0, db: 'd', coll, documentKey: { _id: seq } };
}

/** Whether `p` has settled once the work queued so far has run. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
}

describe('ChangeLog.waitForAppend', () => {
  it('passes over the events its waiter does not want, and resolves on the first it wants', async () => {
    const log = new ChangeLog();
    const waiting = log.waitForAppend(60_000, (e) => e.coll === 'watched');
    log.append(event(1, 'other'));
    log.append(event(2, 'other'));
    expect(await settled(waiting)).toBe(false);
    log.append(event(3, 'watched'));
    expect(await settled(waiting)).toBe(true);
  });

  it('resolves on any event without a filter, and on wakeAll whatever its filter', async () => {
    const log = new ChangeLog();
    const any = log.waitForAppend(60_000);
    log.append(event(1, 'other'));
    expect(await settled(any)).toBe(true);
    const picky = log.waitForAppend(60_000, () => false);
    log.append(event(2, 'other'));
    expect(await settled(picky)).toBe(false);
    log.wakeAll();
    expect(await settled(picky)).toBe(true);
  });
});

describe('a waiting change stream over the wire', () => {
  let t: TestDb;
  beforeAll(async () => {
    t = await openTestDb('cs_wake');
  });
  afterAll(async () => {
    await t?.close();
  });

  it(
    'answers with the first change its $match lets through, after writes elsewhere and changes it drops',
    { timeout: 20_000 },
    async () => {
      const jobs = t.db.collection<Document>('jobs');
      const other = t.db.collection<Document>('events');
      const session = t.client.startSession();
      await other.insertOne({ _id: 'start' as never }, { session });
      const start = session.operationTime as Timestamp;
      await session.endSession();
      // A getMore that is never woken would wait a minute: past this test's timeout.
      const stream = jobs.watch(
        [{ $match: { operationType: 'insert', 'fullDocument.state': { $in: ['queued', 'retrying'] } } }],
        { startAtOperationTime: start, maxAwaitTimeMS: 60_000 },
      );
      try {
        const first = stream.next();
        await other.insertOne({ _id: 'e1' as never });
        await jobs.insertOne({ _id: 'running' as never, state: 'running' });
        await jobs.updateOne({ _id: 'running' as never }, { $set: { state: 'completed' } });
        await other.insertOne({ _id: 'e2' as never });
        await jobs.insertOne({ _id: 'queued' as never, state: 'queued' });
        const change = (await first) as Document;
        expect(change.operationType).toBe('insert');
        expect(change.documentKey).toEqual({ _id: 'queued' });
        const second = stream.next();
        await other.insertOne({ _id: 'e3' as never });
        await jobs.insertOne({ _id: 'retrying' as never, state: 'retrying' });
        expect(((await second) as Document).documentKey).toEqual({ _id: 'retrying' });
      } finally {
        await stream.close();
      }
    },
  );
});
