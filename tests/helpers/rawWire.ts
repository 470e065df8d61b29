/**
 * The wire protocol by hand, below the driver, for tests that send what no driver would: frames built
 * byte by byte, over-size commands the driver would split, malformed and random bytes.
 *
 *   const conn = await RawConnection.open(uri);
 *   const reply = await conn.command({ ping: 1, $db: 'admin' });   // an OP_MSG round trip
 *   conn.write(badBytes); await conn.closedByServer();              // the server closes on a bad frame
 *
 * Waits are on socket events (a reply, the close), never on timers; every wait is bounded by a
 * generous deadline so a hung server fails the test instead of hanging it.
 */
import net from 'node:net';
import { BSON, type Document } from 'bson';
import { crc32c } from '../../src/embedded/wire.js';

export const OP_MSG = 2013;
export const OP_QUERY = 2004;
export const OP_REPLY = 1;

let nextRequestId = 1;

export function requestId(): number {
  return nextRequestId++ & 0x7fffffff;
}

export function hostPort(uri: string): { host: string; port: number } {
  const m = /mongodb:\/\/(?:[^@/]*@)?([^:/,]+):(\d+)/.exec(uri);
  if (!m) throw new Error(`cannot read host and port from ${uri}`);
  return { host: m[1] as string, port: Number(m[2]) };
}

export function header(length: number, opCode: number, id = requestId()): Buffer {
  const h = Buffer.alloc(16);
  h.writeInt32LE(length, 0);
  h.writeInt32LE(id, 4);
  h.writeInt32LE(0, 8);
  h.writeInt32LE(opCode, 12);
  return h;
}

export interface OpMsgOptions {
  checksum?: boolean;
  moreToCome?: boolean;
  /** Kind-1 sections: an identifier and its documents, already encoded or to encode. */
  sequences?: Array<[string, Array<Document | Uint8Array>]>;
  requestId?: number;
}

const encode = (d: Document | Uint8Array): Buffer =>
  Buffer.from(d instanceof Uint8Array ? d : BSON.serialize(d));

/** An OP_MSG frame; `body` may be a document or its bytes (valid or not). */
export function opMsg(body: Document | Uint8Array, opts: OpMsgOptions = {}): Buffer {
  const flags = (opts.checksum ? 1 : 0) | (opts.moreToCome ? 2 : 0);
  const parts: Buffer[] = [Buffer.from([0]), encode(body)];
  for (const [id, docs] of opts.sequences ?? []) {
    const encoded = docs.map(encode);
    const payloadLength = id.length + 1 + encoded.reduce((n, d) => n + d.length, 0);
    const size = Buffer.alloc(4);
    size.writeInt32LE(4 + payloadLength);
    parts.push(Buffer.from([1]), size, Buffer.from(id + '\0'), ...encoded);
  }
  const flagBuf = Buffer.alloc(4);
  flagBuf.writeUInt32LE(flags);
  const sections = Buffer.concat([flagBuf, ...parts]);
  const length = 16 + sections.length + (opts.checksum ? 4 : 0);
  const msg = Buffer.concat([header(length, OP_MSG, opts.requestId), sections]);
  if (!opts.checksum) return msg;
  const sum = Buffer.alloc(4);
  sum.writeUInt32LE(crc32c(msg));
  return Buffer.concat([msg, sum]);
}

/** A legacy OP_QUERY frame on `ns` (e.g. admin.$cmd). */
export function opQuery(ns: string, query: Document | Uint8Array, id = requestId()): Buffer {
  const fixed = Buffer.concat([
    Buffer.alloc(4),
    Buffer.from(ns + '\0'),
    Buffer.from([0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
    encode(query),
  ]);
  return Buffer.concat([header(16 + fixed.length, OP_QUERY, id), fixed]);
}

/** The reply document of an OP_MSG or OP_REPLY frame. */
export function replyDocument(frame: Buffer): Document {
  const opCode = frame.readInt32LE(12);
  if (opCode === OP_MSG) return BSON.deserialize(frame.subarray(21));
  if (opCode === OP_REPLY) return BSON.deserialize(frame.subarray(36));
  throw new Error(`unexpected reply opCode ${opCode}`);
}

export class ServerClosed extends Error {
  constructor() {
    super('the server closed the connection');
    this.name = 'ServerClosed';
  }
}

const DEFAULT_DEADLINE_MS = 60_000;

export class RawConnection {
  private pending: Buffer[] = [];
  private size = 0;
  private waiters: Array<() => void> = [];
  private isClosed = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.pending.push(chunk);
      this.size += chunk.length;
      this.wake();
    });
    socket.on('error', () => {}); // a reset is a close; the 'close' event follows
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        this.wake();
        resolve();
      }),
    );
  }

  static async open(uri: string): Promise<RawConnection> {
    const { host, port } = hostPort(uri);
    const socket = net.connect(port, host);
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return new RawConnection(socket);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  write(bytes: Uint8Array): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  /** The next whole message from the server; ServerClosed if it closes first. */
  async nextMessage(deadlineMs = DEFAULT_DEADLINE_MS): Promise<Buffer> {
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      if (this.size >= 4) {
        const first = this.pending[0] as Buffer;
        const head = first.length >= 4 ? first : Buffer.concat(this.pending, this.size);
        const len = head.readInt32LE(0);
        // Joined once the whole message is here, not once per chunk.
        if (this.size >= len) {
          const all = Buffer.concat(this.pending, this.size);
          const rest = all.subarray(len);
          this.pending = rest.length > 0 ? [rest] : [];
          this.size = rest.length;
          return all.subarray(0, len);
        }
      }
      if (this.isClosed) throw new ServerClosed();
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no reply from the server within ${deadlineMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Sends a command as OP_MSG and returns its reply document. */
  async command(body: Document, opts: OpMsgOptions = {}): Promise<Document> {
    this.write(opMsg(body, opts));
    return replyDocument(await this.nextMessage());
  }

  /** Resolves once the server has closed the connection (rejects past the deadline). */
  async closedByServer(deadlineMs = DEFAULT_DEADLINE_MS): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`the server kept the connection open past ${deadlineMs} ms`)),
        deadlineMs,
      );
    });
    try {
      await Promise.race([this.closed, expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}
