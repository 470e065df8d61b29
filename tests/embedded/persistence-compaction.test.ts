import { describe, expect, it } from 'vitest';
import {
  copyFileSync,
  cpSync,
  existsSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { Binary, ObjectId } from 'bson';
import { crc32 } from 'node:zlib';
import { DataDirDamagedError, openDurableStore } from '../../src/embedded/persistence.js';
import { HEADER_BYTES, Tag, decodeDocuments, scanFrames } from '../../src/embedded/persistenceFrames.js';
import type { LogRecord, SnapshotCollection } from '../../src/embedded/persistenceTypes.js';
import { useTempDirs } from '../fixtures/embedded/tempDir.js';

const tempDir = useTempDirs('compaction');

const ids = (records: LogRecord[]): number[] =>
  records.map((r) => ('doc' in r ? (r.doc._id as number) : NaN));
const rec = (i: number): LogRecord => ({ op: 'insert', db: 'app', coll: 'jobs', doc: { _id: i } });

function sampleState(docs = 3): SnapshotCollection[] {
  return [
    {
      db: 'app',
      coll: 'jobs',
      uuid: new Binary(Buffer.alloc(16, 7), Binary.SUBTYPE_UUID),
      options: { validator: { state: { $type: 'string' } } },
      indexes: [
        { name: '_id_', key: { _id: 1 } },
        {
          name: 'state_1_runAt_1',
          key: { state: 1, runAt: 1 },
          partialFilterExpression: { state: 'queued' },
        },
        { name: 'key_1', key: { key: 1 }, unique: true, sparse: true },
        { name: 'expiresAt_1', key: { expiresAt: 1 }, expireAfterSeconds: 0 },
      ],
      docs: Array.from({ length: docs }, (_, i) => ({
        _id: i,
        state: 'queued',
        runAt: new Date(1_700_000_000_000 + i),
        oid: ObjectId.createFromTime(1_700_000_000 + i),
      })),
    },
    { db: 'app', coll: 'empty', indexes: [{ name: '_id_', key: { _id: 1 } }], docs: [] },
    { db: 'other', coll: 'x', indexes: [], docs: [{ _id: 'a', nested: { list: [1, 2, 3] } }] },
  ];
}

describe('durable store: compaction', () => {
  it('compact then reload gives exactly the state, and an empty log', () => {
    const dir = tempDir();
    const state = sampleState(5000);
    const s = openDurableStore(dir);
    s.load();
    s.append([rec(1)]);
    s.compact(state);
    expect(s.generation).toBe(1);
    s.close();
    expect(readdirSync(dir).sort()).toEqual(['log-1.jobd', 'snapshot-1.jobd']);
    const again = openDurableStore(dir);
    const loaded = again.load();
    again.close();
    expect(loaded.snapshot).toEqual(state);
    expect(loaded.records).toEqual([]);
  });

  it('records appended after a compaction replay on top of the snapshot; repeated compactions keep one pair of files', () => {
    const dir = tempDir();
    const s = openDurableStore(dir);
    s.load();
    for (let g = 1; g <= 3; g++) {
      s.append([rec(g)]);
      s.compact(sampleState(g));
      s.append([rec(100 + g)]);
    }
    s.close();
    expect(readdirSync(dir).sort()).toEqual(['log-3.jobd', 'snapshot-3.jobd']);
    const again = openDurableStore(dir);
    const loaded = again.load();
    again.close();
    expect(loaded.snapshot).toEqual(sampleState(3));
    expect(ids(loaded.records)).toEqual([103]);
    expect(loaded.generation).toBe(3);
  });

  it('shouldCompact() once the log exceeds max(min bytes, ratio × snapshot size)', () => {
    const dir = tempDir();
    const s = openDurableStore(dir, { compactMinBytes: 1000, compactRatio: 2 });
    s.load();
    let n = 0;
    while (!s.shouldCompact()) s.append([rec(n++)]);
    expect(s.logBytes).toBeGreaterThan(1000);
    const state = sampleState(200);
    s.compact(state);
    expect(s.shouldCompact()).toBe(false);
    expect(s.snapshotBytes).toBeGreaterThan(1000);
    while (!s.shouldCompact()) s.append([rec(n++)]);
    expect(s.logBytes).toBeGreaterThan(2 * s.snapshotBytes);
    s.close();
  });

  it('the default threshold is 64 MiB', () => {
    const s = openDurableStore(tempDir());
    s.append([rec(1)]);
    expect(s.shouldCompact()).toBe(false);
    s.close();
  });
});

describe('durable store: a crash at each step of compaction', () => {
  /**
   * Builds the files each step of a compaction would leave behind:
   * `before` holds generation 1 (snapshot-1 + log-1 with records 11, 12), `after` the finished compaction to
   * generation 2 whose snapshot already contains 11 and 12.
   */
  function scenario(): {
    before: string;
    after: string;
    stateBefore: SnapshotCollection[];
    stateAfter: SnapshotCollection[];
  } {
    const before = tempDir();
    const stateBefore = sampleState(2);
    const s = openDurableStore(before);
    s.compact(stateBefore);
    s.append([rec(11)]);
    s.append([rec(12)]);
    s.close();
    const after = tempDir();
    cpSync(before, after, { recursive: true });
    const stateAfter = sampleState(13);
    const t = openDurableStore(after);
    t.compact(stateAfter);
    t.close();
    return { before, after, stateBefore, stateAfter };
  }

  function reopen(dir: string): {
    loaded: ReturnType<ReturnType<typeof openDurableStore>['load']>;
    messages: string[];
  } {
    const messages: string[] = [];
    const s = openDurableStore(dir, { log: (m) => messages.push(m) });
    const loaded = s.load();
    // the recovered directory must keep working
    s.append([rec(99)]);
    s.close();
    return { loaded, messages };
  }

  it('crash while writing the snapshot: the partial .tmp is ignored and removed', () => {
    const { before, after, stateBefore } = scenario();
    const full = readFileSync(join(after, 'snapshot-2.jobd'));
    writeFileSync(join(before, 'snapshot-2.jobd.tmp'), full.subarray(0, Math.floor(full.length / 2)));
    const { loaded } = reopen(before);
    expect(loaded.snapshot).toEqual(stateBefore);
    expect(ids(loaded.records)).toEqual([11, 12]);
    expect(readdirSync(before).sort()).toEqual(['log-1.jobd', 'snapshot-1.jobd']);
  });

  it('crash after the snapshot rename, before the new log: old log records are not applied twice', () => {
    const { before, after, stateAfter } = scenario();
    copyFileSync(join(after, 'snapshot-2.jobd'), join(before, 'snapshot-2.jobd'));
    const { loaded, messages } = reopen(before);
    expect(loaded.snapshot).toEqual(stateAfter);
    expect(loaded.records).toEqual([]);
    expect(messages.join('\n')).toMatch(/interrupted compaction/);
    expect(readdirSync(before).sort()).toEqual(['log-2.jobd', 'snapshot-2.jobd']);
    const again = openDurableStore(before);
    expect(ids(again.load().records)).toEqual([99]);
    again.close();
  });

  it('crash after the new log was created, before the old files were removed', () => {
    const { before, after, stateAfter } = scenario();
    copyFileSync(join(after, 'snapshot-2.jobd'), join(before, 'snapshot-2.jobd'));
    copyFileSync(join(after, 'log-2.jobd'), join(before, 'log-2.jobd'));
    writeFileSync(join(before, 'log-2.jobd.tmp'), 'half-made log');
    const { loaded } = reopen(before);
    expect(loaded.snapshot).toEqual(stateAfter);
    expect(loaded.records).toEqual([]);
    expect(readdirSync(before).sort()).toEqual(['log-2.jobd', 'snapshot-2.jobd']);
  });

  it('crash half-way through removing the old files', () => {
    const { before, after, stateAfter } = scenario();
    copyFileSync(join(after, 'snapshot-2.jobd'), join(before, 'snapshot-2.jobd'));
    copyFileSync(join(after, 'log-2.jobd'), join(before, 'log-2.jobd'));
    rmSync(join(before, 'log-1.jobd'));
    const { loaded } = reopen(before);
    expect(loaded.snapshot).toEqual(stateAfter);
    expect(readdirSync(before).sort()).toEqual(['log-2.jobd', 'snapshot-2.jobd']);
  });

  it('a damaged snapshot is refused, never silently replaced by an older state', () => {
    const { after } = scenario();
    const path = join(after, 'snapshot-2.jobd');
    const bytes = readFileSync(path);
    writeFileSync(path, bytes.subarray(0, bytes.length - 3));
    expect(() => openDurableStore(after)).toThrow(DataDirDamagedError);
    expect(() => openDurableStore(after)).toThrow(/snapshot-2\.jobd: incomplete frame at offset \d+/);
    expect(readFileSync(path).equals(bytes.subarray(0, bytes.length - 3))).toBe(true);
  });

  it('a log newer than every snapshot is refused; a repair sets it aside and starts from the snapshot', () => {
    const { after, stateAfter } = scenario();
    const orphan = readFileSync(join(after, 'log-2.jobd'));
    copyFileSync(join(after, 'log-2.jobd'), join(after, 'log-3.jobd'));
    expect(() => openDurableStore(after)).toThrow(/log-3\.jobd: there is no snapshot of generation 3/);
    expect(existsSync(join(after, 'log-3.jobd'))).toBe(true);
    expect(statSync(join(after, 'snapshot-2.jobd')).size).toBeGreaterThan(0);

    const s = openDurableStore(after, { repair: true });
    const loaded = s.load();
    s.close();
    expect(loaded.snapshot).toEqual(stateAfter);
    const keptAs = loaded.repaired?.[0]?.keptAs as string;
    expect(keptAs).toContain(join(after, 'log-3.jobd.damaged-'));
    expect(readFileSync(keptAs).equals(orphan)).toBe(true);
    expect(existsSync(join(after, 'log-3.jobd'))).toBe(false);
  });
});

describe('durable store: a damaged snapshot', () => {
  /** A snapshot of 4 collections, documents frames of about 1 MiB, a record in the log after it. */
  function bigScenario(): { dir: string; path: string; state: SnapshotCollection[]; frames: Frame[] } {
    const dir = tempDir();
    const pad = 'p'.repeat(12_000);
    const state: SnapshotCollection[] = ['a', 'b', 'c', 'd'].map((coll) => ({
      db: 'app',
      coll,
      indexes: [{ name: 'k_1', key: { k: 1 }, unique: true }],
      docs: Array.from({ length: 150 }, (_, i) => ({ _id: i, k: `${coll}${i}`, pad })),
    }));
    const s = openDurableStore(dir);
    s.compact(state);
    s.append([rec(11)]);
    s.close();
    const path = join(dir, 'snapshot-1.jobd');
    return { dir, path, state, frames: framesOf(path) };
  }

  interface Frame {
    offset: number;
    tag: number;
    len: number;
    ids: unknown[];
  }
  function framesOf(path: string): Frame[] {
    const out: Frame[] = [];
    scanFrames(path, HEADER_BYTES, (tag, payload, offset) =>
      out.push({ offset, tag, len: payload.length, ids: decodeDocuments(payload, {}).map((d) => d._id) }),
    );
    return out;
  }

  it('bytes flipped in the middle: refused with the offset and the documents past it; a repair keeps every frame before it, and the log', () => {
    const { dir, path, state, frames } = bigScenario();
    // the second documents frame of collection c
    const collectionFrames = frames.flatMap((f, i) => (f.tag === Tag.collection ? [i] : []));
    const target = frames[(collectionFrames[2] as number) + 2] as Frame;
    expect(target.tag).toBe(Tag.documents);
    const bytes = readFileSync(path);
    const damaged = Buffer.from(bytes);
    damaged[target.offset + 100] = (damaged[target.offset + 100] as number) ^ 0x55;
    writeFileSync(path, damaged);
    const before = frames.filter((f) => f.offset < target.offset);
    const keptDocs = before.filter((f) => f.tag === Tag.documents).reduce((n, f) => n + f.ids.length, 0);

    let err: unknown;
    try {
      openDurableStore(dir);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DataDirDamagedError);
    const damage = (err as DataDirDamagedError).damages[0];
    expect(damage).toMatchObject({
      file: path,
      what: 'snapshot',
      offset: target.offset,
      framesKept: before.length,
      framesAfter: frames.length - before.length - 1,
      documentsKept: keptDocs,
      documentsTotal: 600,
    });
    expect((err as Error).message).toContain(`${600 - keptDocs} of the snapshot's 600 documents`);
    expect(readFileSync(path).equals(damaged)).toBe(true);

    const messages: string[] = [];
    const s = openDurableStore(dir, { repair: true, log: (m) => messages.push(m) });
    const loaded = s.load();
    s.close();
    expect(loaded.snapshot.map((c) => c.coll)).toEqual(['a', 'b', 'c']);
    expect(loaded.snapshot.slice(0, 2)).toEqual(state.slice(0, 2));
    const c = loaded.snapshot[2] as SnapshotCollection;
    expect(c.indexes).toEqual(state[2]?.indexes);
    expect(c.docs).toEqual(state[2]?.docs.slice(0, c.docs.length));
    expect(loaded.snapshot.reduce((n, x) => n + x.docs.length, 0)).toBe(keptDocs);
    expect(ids(loaded.records)).toEqual([11]);
    expect(readFileSync(loaded.repaired?.[0]?.keptAs as string).equals(damaged)).toBe(true);
    expect(messages.join('\n')).toMatch(/repaired data directory/);

    // what was kept is a whole snapshot now
    const again = openDurableStore(dir);
    const reloaded = again.load();
    again.close();
    expect(reloaded.snapshot).toEqual(loaded.snapshot);
    expect(ids(reloaded.records)).toEqual([11]);
  });

  it('a frame with a valid checksum over bytes that do not decode (what an oversized document once left): refused, then repaired', () => {
    const { dir, path, frames } = bigScenario();
    const target = frames.find((f) => f.tag === Tag.documents && f.ids.length > 0) as Frame;
    const damaged = readFileSync(path);
    const firstDoc = damaged.readInt32LE(target.offset + 8 + 1);
    damaged[target.offset + 8 + firstDoc] = 0x41; // the first document's terminating zero
    const payload = damaged.subarray(target.offset + 8, target.offset + 8 + target.len);
    damaged.writeUInt32LE(
      crc32(payload, crc32(damaged.subarray(target.offset, target.offset + 4))),
      target.offset + 4,
    );
    writeFileSync(path, damaged);
    expect(() => openDurableStore(dir)).toThrow(
      new RegExp(`snapshot-1\\.jobd: unreadable frame at offset ${target.offset}`),
    );
    const s = openDurableStore(dir, { repair: true });
    const loaded = s.load();
    s.close();
    expect(loaded.snapshot.map((c) => [c.coll, c.docs.length])).toEqual([['a', 0]]);
    expect(ids(loaded.records)).toEqual([11]);
  });

  it('a damaged snapshot header keeps no document from it; the log still replays', () => {
    const { dir, path } = bigScenario();
    const damaged = readFileSync(path);
    damaged[3] = 0;
    writeFileSync(path, damaged);
    expect(() => openDurableStore(dir)).toThrow(
      /snapshot-1\.jobd: bad header: not a jobd-embedded data file/,
    );
    const s = openDurableStore(dir, { repair: true });
    const loaded = s.load();
    s.close();
    expect(loaded.snapshot).toEqual([]);
    expect(ids(loaded.records)).toEqual([11]);
  });
});
