/**
 * Limits and malformed input below the driver, in raw wire frames: the official driver splits batches
 * and refuses over-size documents itself, so these are what another client (or a broken one) sends.
 *
 * As mongod: a command may exceed maxBsonObjectSize by a 16 KiB allowance (past it: BSONObjectTooLarge);
 * a message may be up to maxMessageSizeBytes (past it the connection is closed); a frame that cannot be
 * parsed (bad length, unknown opcode, bad checksum, an unknown required flag, sections running past the
 * end) closes the connection; well-framed but invalid BSON gets an InvalidBSON error reply. After each,
 * the server still answers on a fresh connection.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BSON, type Document } from 'bson';
import { openTestDb, type TestDb } from '../helpers/db.js';
import {
  OP_QUERY,
  RawConnection,
  ServerClosed,
  header,
  opMsg,
  opQuery,
  replyDocument,
} from '../helpers/rawWire.js';

const LIMIT = 16 * 1024 * 1024;
const INTERNAL_LIMIT = LIMIT + 16 * 1024;
const MAX_MESSAGE = 48_000_000;

let t: TestDb;
const open: RawConnection[] = [];

async function connect(): Promise<RawConnection> {
  const c = await RawConnection.open(t.uri);
  open.push(c);
  return c;
}

/** The server answers a ping on a new connection. */
async function expectServing(): Promise<void> {
  const c = await connect();
  expect(await c.command({ ping: 1, $db: 'admin' })).toMatchObject({ ok: 1 });
}

/** `doc` padded with a string field so that its BSON is exactly `size` bytes. */
function padTo(doc: Document, size: number): Document {
  const base = BSON.calculateObjectSize({ ...doc, pad: '' });
  const out = { ...doc, pad: 'x'.repeat(size - base) };
  expect(BSON.calculateObjectSize(out)).toBe(size);
  return out;
}

/** A valid document whose first element has an unknown BSON type. */
function invalidBson(doc: Document): Buffer {
  const bytes = Buffer.from(BSON.serialize(doc));
  bytes[4] = 0x77;
  return bytes;
}

beforeAll(async () => {
  t = await openTestDb('limits_wire');
});

afterEach(() => {
  for (const c of open.splice(0)) c.destroy();
});

afterAll(async () => {
  await t.close();
});

describe('command size', () => {
  it('runs a command of exactly 16 MiB + 16 KiB and refuses one byte more with BSONObjectTooLarge', async () => {
    const c = await connect();
    const command = (extra: number): Document => {
      const shell = { insert: 'wire_cmd', $db: t.dbName, documents: [padTo({ _id: 0 }, LIMIT), { _id: 1 }] };
      const docs = shell.documents;
      docs[1] = padTo({ _id: 1 }, INTERNAL_LIMIT - BSON.calculateObjectSize(shell) + 14 + extra);
      return shell;
    };
    const exact = command(0);
    expect(BSON.calculateObjectSize(exact)).toBe(INTERNAL_LIMIT);
    expect(await c.command(exact)).toMatchObject({ ok: 1, n: 2 });
    await t.db.collection('wire_cmd').deleteMany({});

    const over = command(1);
    expect(BSON.calculateObjectSize(over)).toBe(INTERNAL_LIMIT + 1);
    const reply = await c.command(over);
    expect(reply).toMatchObject({ ok: 0, code: 10334, codeName: 'BSONObjectTooLarge' });
    expect(reply.errmsg).toContain(
      `BSONObj size: ${INTERNAL_LIMIT + 1} (0x1004001) is invalid. Size must be between 0 and 16793600(16MB)`,
    );
    expect(await t.db.collection('wire_cmd').countDocuments()).toBe(0);
    await expectServing();
  });

  it('a document sequence whose 3rd document is 16 MiB + 1 inserts the first two and reports index 2', async () => {
    const c = await connect();
    const reply = await c.command(
      { insert: 'wire_seq', $db: t.dbName },
      { sequences: [['documents', [{ _id: 0 }, { _id: 1 }, padTo({ _id: 2 }, LIMIT + 1), { _id: 3 }]]] },
    );
    expect(reply).toMatchObject({ ok: 1, n: 2 });
    expect(reply.writeErrors).toEqual([expect.objectContaining({ index: 2, code: 2 })]);
    expect(await t.db.collection('wire_seq').countDocuments()).toBe(2);
    await expectServing();
  });

  it('refuses a write command of 100001 statements sent as one message with InvalidLength', async () => {
    const c = await connect();
    const docs = Array.from({ length: 100_001 }, (_, i) => ({ _id: i }));
    const reply = await c.command(
      { insert: 'wire_batch', $db: t.dbName },
      { sequences: [['documents', docs]] },
    );
    expect(reply).toMatchObject({ ok: 0, code: 16, codeName: 'InvalidLength' });
    expect(await t.db.collection('wire_batch').countDocuments()).toBe(0);
    await expectServing();
  });
});

describe('message size', () => {
  it('takes a message of exactly maxMessageSizeBytes', async () => {
    const c = await connect();
    const body = { insert: 'wire_msg', $db: t.dbName };
    const shell = opMsg(body, { sequences: [['documents', [{ _id: 0 }, { _id: 1 }, { _id: 2 }]]] });
    const perDoc = Math.floor((MAX_MESSAGE - shell.length) / 3);
    const sizes = [perDoc, perDoc, MAX_MESSAGE - shell.length - 2 * perDoc].map(
      (n, i) => n + BSON.calculateObjectSize({ _id: i }),
    );
    const docs = sizes.map((size, i) => padTo({ _id: i }, size));
    const frame = opMsg(body, { sequences: [['documents', docs]] });
    expect(frame.length).toBe(MAX_MESSAGE);
    c.write(frame);
    expect(replyDocument(await c.nextMessage())).toMatchObject({ ok: 1, n: 3 });
    await expectServing();
  });

  it('closes the connection on a message announcing maxMessageSizeBytes + 1, without a reply', async () => {
    const c = await connect();
    c.write(header(MAX_MESSAGE + 1, 2013));
    await expect(c.nextMessage()).rejects.toBeInstanceOf(ServerClosed);
    await expectServing();
  });
});

describe('malformed frames', () => {
  const ping = (): Document => ({ ping: 1, $db: 'admin' });
  const withInt32 = (frame: Buffer, offset: number, value: number): Buffer => {
    const b = Buffer.from(frame);
    b.writeInt32LE(value, offset);
    return b;
  };

  const closing: Array<[string, () => Buffer]> = [
    ['a length below the 16-byte header', () => withInt32(opMsg(ping()), 0, 5)],
    ['a negative length', () => withInt32(opMsg(ping()), 0, -1)],
    ['an unknown opcode', () => withInt32(opMsg(ping()), 12, 9999)],
    ['OP_COMPRESSED, which no client was offered', () => withInt32(opMsg(ping()), 12, 2012)],
    [
      'a wrong checksum',
      () => {
        const f = opMsg(ping(), { checksum: true });
        f[f.length - 1] = (f[f.length - 1] as number) ^ 0xff;
        return f;
      },
    ],
    ['an unknown required flag bit', () => withInt32(opMsg(ping()), 16, 1 << 3)],
    ['a body section longer than the message', () => withInt32(opMsg(ping()), 21, 1000)],
    ['a body section length below 5', () => withInt32(opMsg(ping()), 21, 2)],
    [
      'two body sections',
      () => {
        const one = opMsg(ping());
        const body = one.subarray(20);
        const f = Buffer.concat([one, body]);
        f.writeInt32LE(f.length, 0);
        return f;
      },
    ],
    [
      'an unknown section kind',
      () => {
        const f = Buffer.from(opMsg(ping()));
        f[20] = 7;
        return f;
      },
    ],
    [
      'no body section',
      () => {
        const body = { insert: 'x', $db: 'fuzz' };
        const f = opMsg(body, { sequences: [['documents', [{ _id: 1 }]]] });
        const g = Buffer.concat([f.subarray(0, 20), f.subarray(21 + BSON.calculateObjectSize(body))]);
        g.writeInt32LE(g.length, 0);
        return g;
      },
    ],
    [
      'a document sequence running past the message',
      () => {
        const f = opMsg({ insert: 'x', $db: 'fuzz' }, { sequences: [['documents', [{ _id: 1 }]]] });
        const seqAt = 21 + BSON.calculateObjectSize({ insert: 'x', $db: 'fuzz' }) + 1;
        return withInt32(f, seqAt, 10_000);
      },
    ],
    [
      'an OP_QUERY with no collection name terminator',
      () => Buffer.concat([header(24, OP_QUERY), Buffer.alloc(4, 1), Buffer.alloc(4, 0x41)]),
    ],
  ];

  for (const [what, frame] of closing) {
    it(`closes the connection on ${what}, and serves others`, async () => {
      const c = await connect();
      c.write(frame());
      await expect(c.nextMessage()).rejects.toBeInstanceOf(ServerClosed);
      await expectServing();
    });
  }

  it('answers invalid BSON in an OP_MSG body with InvalidBSON and keeps the connection', async () => {
    const c = await connect();
    c.write(opMsg(invalidBson({ find: 'x', $db: 'fuzz' })));
    const reply = replyDocument(await c.nextMessage());
    expect(reply).toMatchObject({ ok: 0, code: 22, codeName: 'InvalidBSON' });
    expect(await c.command(ping())).toMatchObject({ ok: 1 });
  });

  it('answers invalid BSON in a document sequence with InvalidBSON, inserting nothing', async () => {
    const c = await connect();
    const reply = await c.command(
      { insert: 'wire_bad_seq', $db: t.dbName },
      { sequences: [['documents', [{ _id: 1 }, invalidBson({ _id: 2, a: 1 })]]] },
    );
    expect(reply).toMatchObject({ ok: 0, code: 22 });
    expect(await t.db.collection('wire_bad_seq').countDocuments()).toBe(0);
  });

  it('answers invalid BSON in an OP_QUERY with an OP_REPLY error', async () => {
    const c = await connect();
    c.write(opQuery('admin.$cmd', invalidBson({ isMaster: 1 })));
    const frame = await c.nextMessage();
    expect(frame.readInt32LE(12)).toBe(1);
    expect(replyDocument(frame)).toMatchObject({ ok: 0, code: 22 });
    expect(await c.command(ping())).toMatchObject({ ok: 1 });
  });

  it('sends nothing back for invalid BSON under moreToCome, and keeps serving the connection', async () => {
    const c = await connect();
    c.write(opMsg(invalidBson({ insert: 'x', $db: 'fuzz' }), { moreToCome: true }));
    // The next reply on the connection is the ping's: nothing came for the first message.
    expect(await c.command(ping())).toMatchObject({ ok: 1 });
  });

  it('drops a message cut short when the client goes away, and serves others', async () => {
    const c = await connect();
    const frame = opMsg({ insert: 'wire_cut', $db: t.dbName, documents: [{ _id: 1 }] });
    c.write(frame.subarray(0, frame.length - 3));
    c.socket.end();
    await c.closedByServer();
    await expectServing();
    expect(await t.db.collection('wire_cut').countDocuments()).toBe(0);
  });
});
