/**
 * Cutting a connection's byte stream into messages: however the bytes are split into socket chunks (a
 * length prefix cut in two, one byte at a time, many messages in one chunk, a 15 MiB message in 64 KiB
 * chunks), every message comes out whole, byte for byte and in order, in memory of its own. The reader
 * keeps the chunks and joins them once per message, so a large message costs one copy rather than one
 * per chunk.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BSON } from 'bson';
import { FrameReader } from '../../src/embedded/frames.js';
import { openTestDb, type TestDb } from '../helpers/db.js';
import { RawConnection, opMsg, replyDocument } from '../helpers/rawWire.js';

/** A frame of `length` bytes (a valid length prefix, then a recognisable pattern). */
function frame(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  b.writeInt32LE(length, 0);
  for (let i = 4; i < length; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** Splits `bytes` at the given chunk sizes (the last chunk takes the rest). */
function chunked(bytes: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const n of sizes) {
    if (at >= bytes.length) break;
    out.push(bytes.subarray(at, Math.min(bytes.length, at + n)));
    at += n;
  }
  if (at < bytes.length) out.push(bytes.subarray(at));
  return out;
}

/** Feeds chunks to a new reader and returns the messages it cut, checked to be all there is. */
function readAll(chunks: Buffer[]): Buffer[] {
  const reader = new FrameReader();
  const out: Buffer[] = [];
  for (const c of chunks) {
    const { messages, invalidLength } = reader.push(c);
    expect(invalidLength).toBeUndefined();
    out.push(...messages);
  }
  return out;
}

function expectSame(actual: Buffer[], expected: Buffer[]): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((m, i) => expect(m.equals(expected[i] as Buffer), `message ${i}`).toBe(true));
}

/** A small deterministic generator, so a failing split can be replayed. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('frame reader', () => {
  const small = [frame(16, 1), frame(21, 2), frame(300, 3), frame(17, 4), frame(4096, 5)];
  const stream = Buffer.concat(small);

  it('cuts messages that arrive together in one chunk', () => {
    expectSame(readAll([stream]), small);
  });

  it('cuts the same messages at every split point of the stream', () => {
    const head = small.slice(0, 4);
    const bytes = Buffer.concat(head);
    for (let at = 1; at < bytes.length; at++) {
      expectSame(readAll([bytes.subarray(0, at), bytes.subarray(at)]), head);
    }
  });

  it('cuts them when the stream comes one byte at a time', () => {
    expectSame(readAll(chunked(stream, new Array<number>(stream.length).fill(1))), small);
  });

  it('reads a length prefix cut into two, three or four chunks', () => {
    for (const sizes of [
      [1, 3],
      [2, 2],
      [3, 1],
      [1, 1, 2],
      [1, 1, 1, 1],
    ]) {
      expectSame(readAll(chunked(stream, sizes)), small);
    }
  });

  it('cuts large messages between small ones, whatever the chunk sizes', () => {
    const messages = [frame(40, 6), frame(5 * 1024 * 1024 + 3, 7), frame(16, 8), frame(700_001, 9)];
    const all = Buffer.concat(messages);
    expectSame(readAll(chunked(all, new Array<number>(100).fill(64 * 1024))), messages);
    const next = random(42);
    for (let round = 0; round < 5; round++) {
      const sizes = Array.from({ length: 400 }, () => 1 + Math.floor(next() * 100_000));
      expectSame(readAll(chunked(all, sizes)), messages);
    }
  });

  it('gives each message memory of its own, untouched when its chunks are overwritten', () => {
    // Decoded values (Binary) keep their message's memory: it must not be a view of a whole socket read.
    const chunks = chunked(stream, [10, 30, 500, 7, 4000]).map((c) => Buffer.from(c));
    const out = readAll(chunks);
    for (const c of chunks) c.fill(0xee);
    expectSame(out, small);
  });

  it('stops at a length it cannot read, after the messages before it', () => {
    const bad = Buffer.alloc(8);
    bad.writeInt32LE(15, 0);
    const reader = new FrameReader();
    const first = reader.push(Buffer.concat([small[0] as Buffer, small[1] as Buffer, bad]));
    expectSame(first.messages, [small[0] as Buffer, small[1] as Buffer]);
    expect(first.invalidLength).toBe(15);
    expect(reader.push(small[2] as Buffer).messages).toEqual([]);
  });

  it('stops at a length over maxMessageSizeBytes without waiting for its bytes', () => {
    const big = Buffer.alloc(4);
    big.writeInt32LE(48_000_001, 0);
    expect(new FrameReader().push(big).invalidLength).toBe(48_000_001);
  });
});

describe('large and split frames over the wire', () => {
  let t: TestDb;
  const open: RawConnection[] = [];

  beforeAll(async () => {
    t = await openTestDb('wire_frames');
  });

  afterAll(async () => {
    for (const c of open) c.destroy();
    await t.close();
  });

  it('inserts a 15 MiB document sent in 64 KiB writes, its length prefix split, with a ping in its last write', async () => {
    const c = await RawConnection.open(t.uri);
    open.push(c);
    const payload = 'y'.repeat(15 * 1024 * 1024);
    const insert = opMsg({ insert: 'frames', $db: t.dbName, documents: [{ _id: 'big', payload }] });
    const ping = opMsg({ ping: 1, $db: 'admin' });
    const writes = chunked(insert, [2, 1, ...new Array<number>(300).fill(64 * 1024)]);
    const last = writes.pop() as Buffer;
    for (const w of writes) c.write(w);
    c.write(Buffer.concat([last, ping]));
    expect(replyDocument(await c.nextMessage())).toMatchObject({ ok: 1, n: 1 });
    expect(replyDocument(await c.nextMessage())).toMatchObject({ ok: 1 });

    const found = await t.db.collection<{ _id: string; payload: string }>('frames').findOne({ _id: 'big' });
    expect(found?.payload.length).toBe(payload.length);
    expect(found?.payload === payload).toBe(true);
    expect(BSON.calculateObjectSize(found ?? {})).toBeGreaterThan(15 * 1024 * 1024);
  });
});
