import { describe, expect, it } from 'vitest';
import { readdirSync } from 'node:fs';
import { Binary, Decimal128, Long, ObjectId, Timestamp } from 'bson';
import { openDurableStore } from '../../src/embedded/persistence.js';
import type { LogRecord } from '../../src/embedded/persistenceTypes.js';
import { useTempDirs } from '../fixtures/embedded/tempDir.js';

const tempDir = useTempDirs('store');

describe('durable store: round trip', () => {
  it('starts empty in a fresh directory (created if missing)', () => {
    const dir = `${tempDir()}/nested/data`;
    const store = openDurableStore(dir);
    expect(store.load()).toMatchObject({ snapshot: [], records: [], droppedTornTail: false, generation: 0 });
    store.close();
    expect(readdirSync(dir).sort()).toEqual(['log-0.jobd']);
  });

  it('replays every appended record, in order, with BSON types intact', () => {
    const dir = tempDir();
    const id = new ObjectId();
    const records: LogRecord[] = [
      { op: 'createCollection', db: 'app', coll: 'jobs', options: { capped: false } },
      {
        op: 'createIndex',
        db: 'app',
        coll: 'jobs',
        spec: { name: 'k_1', key: { k: 1 }, unique: true, partialFilterExpression: { k: { $exists: true } } },
      },
      {
        op: 'insert',
        db: 'app',
        coll: 'jobs',
        doc: {
          _id: id,
          k: 'a',
          long: Long.fromString('9007199254740993'),
          dec: Decimal128.fromString('12.50'),
          bin: new Binary(Buffer.from([1, 2, 3])),
          ts: new Timestamp({ t: 7, i: 1 }),
          at: new Date('2024-01-02T03:04:05.678Z'),
          nested: { arr: [1, 'two', null, { three: 3 }], 'dotted.key': true, $dollar: 1 },
        },
      },
      { op: 'replace', db: 'app', coll: 'jobs', doc: { _id: id, k: 'b' } },
      { op: 'delete', db: 'app', coll: 'jobs', id },
      { op: 'renameCollection', db: 'app', coll: 'jobs', toDb: 'app', toColl: 'jobs2' },
      { op: 'dropIndex', db: 'app', coll: 'jobs2', name: 'k_1' },
      { op: 'dropCollection', db: 'app', coll: 'jobs2' },
      { op: 'dropDatabase', db: 'app' },
    ];
    const store = openDurableStore(dir);
    store.load();
    store.append(records.slice(0, 2));
    store.append([]);
    store.append(records.slice(2, 3));
    store.append(records.slice(3));
    store.close();

    const again = openDurableStore(dir);
    const state = again.load();
    again.close();
    expect(state.droppedTornTail).toBe(false);
    expect(state.records).toEqual(records);
    const doc = (state.records[2] as { doc: Record<string, unknown> }).doc;
    expect(doc._id).toBeInstanceOf(ObjectId);
    expect(doc.dec).toBeInstanceOf(Decimal128);
    expect(doc.at).toBeInstanceOf(Date);
    // Long beyond 2^53 must not lose precision
    expect(String(doc.long)).toBe('9007199254740993');
    expect(Object.keys(doc)).toEqual(Object.keys((records[2] as { doc: object }).doc));
  });

  it('honours the engine’s BSON decoding options', () => {
    const dir = tempDir();
    const store = openDurableStore(dir);
    store.append([{ op: 'insert', db: 'd', coll: 'c', doc: { _id: 1, n: Long.fromNumber(5) } }]);
    store.close();
    const again = openDurableStore(dir, { bsonOptions: { promoteLongs: false } });
    const doc = (again.load().records[0] as { doc: Record<string, unknown> }).doc;
    again.close();
    expect(doc.n).toBeInstanceOf(Long);
  });

  it('keeps appending to the same log across restarts', () => {
    const dir = tempDir();
    for (let i = 0; i < 5; i++) {
      const s = openDurableStore(dir);
      expect(s.load().records).toHaveLength(i);
      s.append([{ op: 'insert', db: 'd', coll: 'c', doc: { _id: i } }]);
      s.close();
    }
    const s = openDurableStore(dir);
    expect(s.load().records.map((r) => ('doc' in r ? (r.doc._id as number) : NaN))).toEqual([0, 1, 2, 3, 4]);
    s.close();
  });

  it('load() called again later re-reads everything appended since', () => {
    const dir = tempDir();
    const s = openDurableStore(dir);
    s.load();
    s.append([{ op: 'insert', db: 'd', coll: 'c', doc: { _id: 1 } }]);
    expect(s.load().records).toHaveLength(1);
    s.close();
  });

  it('one append of many records is one frame of any size', () => {
    const dir = tempDir();
    const big = 'x'.repeat(1024 * 1024);
    const batch: LogRecord[] = Array.from({ length: 40 }, (_, i) => ({
      op: 'insert',
      db: 'd',
      coll: 'c',
      doc: { _id: i, big },
    }));
    const s = openDurableStore(dir);
    s.append(batch);
    s.close();
    const again = openDurableStore(dir);
    const state = again.load();
    again.close();
    expect(state.records).toHaveLength(40);
    const last = state.records[39];
    expect(last && 'doc' in last ? last.doc.big : undefined).toHaveLength(big.length);
  });

  it('refuses use after close()', () => {
    const s = openDurableStore(tempDir());
    s.close();
    s.close();
    expect(() => s.append([{ op: 'dropDatabase', db: 'x' }])).toThrow(/closed/);
  });
});
