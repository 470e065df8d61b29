/**
 * The wire protocol below the driver: the legacy OP_QUERY handshake, OP_MSG checksums,
 * document sequences and moreToCome, spoken over a raw socket to the test database.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BSON, type Document } from 'bson';
import { openTestDb, type TestDb } from '../helpers/db.js';
import { crc32c } from '../../src/embedded/wire.js';

let t: TestDb;
let socket: net.Socket;
let pending: Buffer = Buffer.alloc(0);
let waiters: Array<() => void> = [];
let requestId = 1;

function hostPort(uri: string): { host: string; port: number } {
  const m = /mongodb:\/\/(?:[^@/]*@)?([^:/,]+):(\d+)/.exec(uri);
  if (!m) throw new Error(`cannot read host and port from ${uri}`);
  return { host: m[1] as string, port: Number(m[2]) };
}

async function readMessage(): Promise<Buffer> {
  for (;;) {
    if (pending.length >= 4) {
      const len = pending.readInt32LE(0);
      if (pending.length >= len) {
        const msg = pending.subarray(0, len);
        pending = pending.subarray(len);
        return msg;
      }
    }
    await new Promise<void>((resolve) => waiters.push(resolve));
  }
}

function header(length: number, opCode: number): Buffer {
  const h = Buffer.alloc(16);
  h.writeInt32LE(length, 0);
  h.writeInt32LE(requestId++, 4);
  h.writeInt32LE(0, 8);
  h.writeInt32LE(opCode, 12);
  return h;
}

function opMsg(
  body: Document,
  opts: { checksum?: boolean; moreToCome?: boolean; sequence?: [string, Document[]] } = {},
): Buffer {
  const flags = (opts.checksum ? 1 : 0) | (opts.moreToCome ? 2 : 0);
  const parts: Buffer[] = [Buffer.from([0]), Buffer.from(BSON.serialize(body))];
  if (opts.sequence) {
    const [id, docs] = opts.sequence;
    const payload = Buffer.concat([
      Buffer.from(id + '\0'),
      ...docs.map((d) => Buffer.from(BSON.serialize(d))),
    ]);
    const size = Buffer.alloc(4);
    size.writeInt32LE(4 + payload.length);
    parts.push(Buffer.from([1]), size, payload);
  }
  const flagBuf = Buffer.alloc(4);
  flagBuf.writeUInt32LE(flags);
  const sections = Buffer.concat([flagBuf, ...parts]);
  const length = 16 + sections.length + (opts.checksum ? 4 : 0);
  const msg = Buffer.concat([header(length, 2013), sections]);
  if (!opts.checksum) return msg;
  const sum = Buffer.alloc(4);
  sum.writeUInt32LE(crc32c(msg));
  return Buffer.concat([msg, sum]);
}

async function command(body: Document, opts: Parameters<typeof opMsg>[1] = {}): Promise<Document> {
  socket.write(opMsg(body, opts));
  const reply = await readMessage();
  expect(reply.readInt32LE(12)).toBe(2013);
  return BSON.deserialize(reply.subarray(21));
}

beforeAll(async () => {
  t = await openTestDb('wire');
  const { host, port } = hostPort(t.uri);
  socket = net.connect(port, host);
  socket.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
});

afterAll(async () => {
  socket.destroy();
  await t.close();
});

describe('wire protocol', () => {
  it('answers the legacy OP_QUERY isMaster handshake with an OP_REPLY', async () => {
    const query = Buffer.from(BSON.serialize({ isMaster: 1, helloOk: true }));
    const fixed = Buffer.concat([
      Buffer.alloc(4),
      Buffer.from('admin.$cmd\0'),
      Buffer.from([0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
      query,
    ]);
    socket.write(Buffer.concat([header(16 + fixed.length, 2004), fixed]));
    const reply = await readMessage();
    expect(reply.readInt32LE(12)).toBe(1);
    expect(reply.readInt32LE(32)).toBe(1);
    const doc = BSON.deserialize(reply.subarray(36));
    expect(doc.ok).toBe(1);
    expect(doc.ismaster).toBe(true);
    expect(doc.maxWireVersion).toBeGreaterThanOrEqual(17);
    expect(doc.setName).toEqual(expect.any(String));
  });

  it('accepts an OP_MSG carrying a CRC-32C checksum', async () => {
    const reply = await command({ ping: 1, $db: 'admin' }, { checksum: true });
    expect(reply.ok).toBe(1);
  });

  it('takes insert documents from a kind-1 document sequence', async () => {
    const reply = await command(
      { insert: 'seq', $db: t.dbName },
      { sequence: ['documents', [{ _id: 1 }, { _id: 2 }, { _id: 3 }]] },
    );
    expect(reply).toMatchObject({ ok: 1, n: 3 });
    expect(await t.db.collection('seq').countDocuments()).toBe(3);
  });

  it('sends no reply to a moreToCome message but still applies it', async () => {
    socket.write(
      opMsg(
        { insert: 'quiet', documents: [{ _id: 'a' }], writeConcern: { w: 0 }, $db: t.dbName },
        { moreToCome: true },
      ),
    );
    // The next request's reply is the next message on the socket: nothing came for the first.
    const reply = await command({ find: 'quiet', filter: {}, $db: t.dbName });
    expect(reply.cursor.firstBatch).toEqual([{ _id: 'a' }]);
  });

  it('names an unknown command in a CommandNotFound error', async () => {
    const reply = await command({ frobnicate: 1, $db: 'admin' });
    expect(reply).toMatchObject({ ok: 0, code: 59, codeName: 'CommandNotFound' });
    expect(reply.errmsg).toContain('frobnicate');
  });
});
