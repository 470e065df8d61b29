/**
 * The frame writer never writes a frame it cannot read back, whatever it is given; and a snapshot is
 * proven to read back before compaction installs it.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { createHash } from 'node:crypto';
import { Binary, EJSON, type Document } from 'bson';
import {
  FRAME_HEADER_BYTES,
  HEADER_BYTES,
  Tag,
  decodeDocuments,
  encodeFrame,
  scanFrames,
  serializeDocument,
} from '../../src/embedded/persistenceFrames.js';
import { verifySnapshotFile, writeSnapshotFile } from '../../src/embedded/persistenceSnapshot.js';
import { openDurableStore } from '../../src/embedded/persistence.js';
import type { SnapshotCollection } from '../../src/embedded/persistenceTypes.js';
import { useTempDirs } from '../fixtures/embedded/tempDir.js';

const tempDir = useTempDirs('frames');
const MIB = 1024 * 1024;

/** Documents bson's serialize() gets wrong or refuses: past its shared 17 MiB buffer. */
function oversized(): Record<string, Document> {
  return {
    // serialize() returned this truncated, with a length promising bytes that were never written
    'one 18 MiB string': { _id: 'string', s: 'x'.repeat(18 * MIB) + 'end' },
    // serialize() threw a RangeError on these
    'an 18 MiB binary': { _id: 'binary', b: new Binary(Buffer.alloc(18 * MIB, 7)) },
    '18,000 strings of 1 KiB': {
      _id: 'array',
      arr: Array.from({ length: 18_000 }, (_, i) => `${i}:`.padEnd(1024, 'abcdefgh')),
    },
  };
}

/** A digest of a document through canonical Extended JSON: independent of the BSON encoder under test. */
const fingerprint = (d: Document): string =>
  createHash('sha256')
    .update(EJSON.stringify(d, { relaxed: false }))
    .digest('hex');

describe('frame writer: every frame it writes decodes', () => {
  it.each(Object.entries(oversized()))('%s: encoded exactly, decoded equal', (_name, doc) => {
    const bytes = serializeDocument(doc);
    expect(bytes.readInt32LE(0)).toBe(bytes.length);
    const frame = encodeFrame(Tag.records, [doc, { _id: 'after' }]);
    const decoded = decodeDocuments(frame.subarray(FRAME_HEADER_BYTES), {});
    expect(decoded).toHaveLength(2);
    expect(decoded[1]).toEqual({ _id: 'after' });
    expect(fingerprint(decoded[0] as Document)).toBe(fingerprint(doc));
    expect(Object.keys(decoded[0] as Document)).toEqual(Object.keys(doc));
  });

  it('refuses what cannot be encoded at all, before anything is written', () => {
    const circular: Document = { _id: 1 };
    circular.self = circular;
    expect(() => encodeFrame(Tag.records, [circular])).toThrow(/circular/i);
    expect(() => encodeFrame(Tag.records, [{ 'a\u0000b': 1 }])).toThrow(/null bytes/);
  });

  it('documents over 16 MiB survive the log, a compaction and a restart, equal to what was written', () => {
    const dir = tempDir();
    const all = oversized();
    const docs = [all['one 18 MiB string'], all['18,000 strings of 1 KiB']] as Document[];
    const expected = docs.map(fingerprint);
    const s = openDurableStore(dir);
    s.load();
    for (const doc of docs) s.append([{ op: 'insert', db: 'app', coll: 'big', doc }]);
    s.close();

    const afterLog = openDurableStore(dir);
    const replayed = afterLog.load().records.map((r) => ('doc' in r ? fingerprint(r.doc) : ''));
    expect(replayed).toEqual(expected);
    afterLog.compact([{ db: 'app', coll: 'big', indexes: [], docs }]);
    afterLog.close();

    const afterCompaction = openDurableStore(dir);
    const loaded = afterCompaction.load();
    afterCompaction.close();
    expect(loaded.generation).toBe(1);
    expect(loaded.snapshot[0]?.docs.map(fingerprint)).toEqual(expected);
  });
});

describe('snapshot verification: read back and compared before it replaces the old one', () => {
  const state: SnapshotCollection[] = [
    {
      db: 'app',
      coll: 'jobs',
      indexes: [{ name: 'k_1', key: { k: 1 } }],
      docs: Array.from({ length: 3000 }, (_, i) => ({ _id: i, k: `key ${i}`, pad: 'p'.repeat(500) })),
    },
    { db: 'app', coll: 'empty', indexes: [], docs: [] },
  ];

  /** Frame offsets of a file, with their tags. */
  function frames(path: string): { offset: number; tag: number; len: number }[] {
    const out: { offset: number; tag: number; len: number }[] = [];
    scanFrames(path, HEADER_BYTES, (tag, payload, offset) => out.push({ offset, tag, len: payload.length }));
    return out;
  }

  /** Rewrites a frame's payload byte and fixes its checksum: only decoding or the digest can tell. */
  function alterWithValidChecksum(
    path: string,
    frameOffset: number,
    byteInPayload: number,
    value: number,
  ): void {
    const b = readFileSync(path);
    const len = b.readUInt32LE(frameOffset);
    b[frameOffset + FRAME_HEADER_BYTES + byteInPayload] = value;
    const payload = b.subarray(frameOffset + FRAME_HEADER_BYTES, frameOffset + FRAME_HEADER_BYTES + len);
    b.writeUInt32LE(crc32(payload, crc32(b.subarray(frameOffset, frameOffset + 4))), frameOffset + 4);
    writeFileSync(path, b);
  }

  it('a snapshot as written verifies', () => {
    const path = join(tempDir(), 'snapshot-1.jobd');
    const written = writeSnapshotFile(path, 1, state);
    expect(written).toMatchObject({ collections: 2, documents: 3000 });
    expect(() => verifySnapshotFile(path, 1, written, {})).not.toThrow();
  });

  it('bytes that do not decode, under a valid checksum, fail verification', () => {
    const path = join(tempDir(), 'snapshot-1.jobd');
    const written = writeSnapshotFile(path, 1, state);
    const docsFrame = frames(path).find((f) => f.tag === Tag.documents) as { offset: number; len: number };
    // the first document's terminating zero byte
    const firstDocLen = readFileSync(path).readInt32LE(docsFrame.offset + FRAME_HEADER_BYTES + 1);
    alterWithValidChecksum(path, docsFrame.offset, firstDocLen, 0x7f);
    expect(() => verifySnapshotFile(path, 1, written, {})).toThrow(
      new RegExp(
        `snapshot-1.jobd does not read back as written: at offset ${docsFrame.offset}: unreadable frame`,
      ),
    );
  });

  it('decodable bytes that differ from what was written fail on the digest', () => {
    const path = join(tempDir(), 'snapshot-1.jobd');
    const written = writeSnapshotFile(path, 1, state);
    const docsFrame = frames(path).find((f) => f.tag === Tag.documents) as { offset: number; len: number };
    // a character inside the last document's padding: still valid BSON, different content
    alterWithValidChecksum(path, docsFrame.offset, docsFrame.len - 10, 'q'.charCodeAt(0));
    expect(() => verifySnapshotFile(path, 1, written, {})).toThrow(/digest differs/);
  });

  it('a snapshot cut short, or with a frame missing, fails verification', () => {
    const dir = tempDir();
    const path = join(dir, 'snapshot-1.jobd');
    const written = writeSnapshotFile(path, 1, state);
    const whole = readFileSync(path);
    writeFileSync(path, whole.subarray(0, whole.length - 1));
    expect(() => verifySnapshotFile(path, 1, written, {})).toThrow(/does not read back/);
    const f = frames(join(dir, 'snapshot-1.jobd'));
    writeFileSync(path, whole);
    const second = f[2] as { offset: number; len: number };
    writeFileSync(
      path,
      Buffer.concat([
        whole.subarray(0, second.offset),
        whole.subarray(second.offset + FRAME_HEADER_BYTES + second.len),
      ]),
    );
    expect(() => verifySnapshotFile(path, 1, written, {})).toThrow(/does not read back/);
  });
});
