/**
 * The MongoDB wire protocol: message framing, OP_MSG (with document sequences, checksums and
 * moreToCome), and the legacy OP_QUERY handshake answered with OP_REPLY.
 */
import { BSON, type Document } from 'bson';
import { deserializeKeepingTypes } from './numbers.js';

export const OP_REPLY = 1;
export const OP_QUERY = 2004;
export const OP_COMPRESSED = 2012;
export const OP_MSG = 2013;

export const MSG_CHECKSUM_PRESENT = 1 << 0;
export const MSG_MORE_TO_COME = 1 << 1;
export const MSG_EXHAUST_ALLOWED = 1 << 16;

export const MAX_MESSAGE_SIZE = 48_000_000;

export interface Header {
  length: number;
  requestId: number;
  responseTo: number;
  opCode: number;
}

export type Request =
  | { kind: 'msg'; header: Header; flags: number; command: Document }
  | { kind: 'query'; header: Header; collection: string; command: Document };

export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

/** Commands keep each number's BSON type (see numbers.ts). */
export const WIRE_DESERIALIZE_OPTIONS: BSON.DeserializeOptions = {
  promoteLongs: false,
  promoteValues: false,
  promoteBuffers: false,
};

export function readHeader(buf: Buffer): Header {
  return {
    length: buf.readInt32LE(0),
    requestId: buf.readInt32LE(4),
    responseTo: buf.readInt32LE(8),
    opCode: buf.readInt32LE(12),
  };
}

export function parseMessage(msg: Buffer): Request {
  const header = readHeader(msg);
  if (header.opCode === OP_MSG) return parseOpMsg(header, msg);
  if (header.opCode === OP_QUERY) return parseOpQuery(header, msg);
  if (header.opCode === OP_COMPRESSED)
    throw new ProtocolError('OP_COMPRESSED is not supported: the server advertises no compressors');
  throw new ProtocolError(`Unsupported opCode ${header.opCode}`);
}

function parseOpMsg(header: Header, msg: Buffer): Request {
  const flags = msg.readUInt32LE(16);
  let end = msg.length;
  if (flags & MSG_CHECKSUM_PRESENT) {
    end -= 4;
    const expected = msg.readUInt32LE(end);
    const actual = crc32c(msg.subarray(0, end));
    if (expected !== actual) throw new ProtocolError('OP_MSG checksum mismatch');
  }
  // Bits 0-15 are required: a set bit we do not know must fail the message.
  const unknownRequired = flags & 0xffff & ~(MSG_CHECKSUM_PRESENT | MSG_MORE_TO_COME);
  if (unknownRequired) throw new ProtocolError(`Unsupported OP_MSG flag bits ${unknownRequired}`);
  let pos = 20;
  let body: Document | undefined;
  const sequences: Array<[string, Document[]]> = [];
  while (pos < end) {
    const kind = msg.readUInt8(pos);
    pos += 1;
    if (kind === 0) {
      const size = msg.readInt32LE(pos);
      if (body) throw new ProtocolError('OP_MSG has more than one body section');
      body = deserializeKeepingTypes(msg.subarray(pos, pos + size));
      pos += size;
    } else if (kind === 1) {
      const size = msg.readInt32LE(pos);
      const sectionEnd = pos + size;
      let p = pos + 4;
      const nul = msg.indexOf(0, p);
      if (nul < 0 || nul >= sectionEnd) throw new ProtocolError('Malformed document sequence identifier');
      const id = msg.toString('utf8', p, nul);
      p = nul + 1;
      const docs: Document[] = [];
      while (p < sectionEnd) {
        const dsize = msg.readInt32LE(p);
        docs.push(deserializeKeepingTypes(msg.subarray(p, p + dsize)));
        p += dsize;
      }
      sequences.push([id, docs]);
      pos = sectionEnd;
    } else {
      throw new ProtocolError(`Unknown OP_MSG section kind ${kind}`);
    }
  }
  if (!body) throw new ProtocolError('OP_MSG has no body section');
  for (const [id, docs] of sequences) {
    const existing = body[id] as unknown;
    if (Array.isArray(existing)) existing.push(...docs);
    else body[id] = docs;
  }
  return { kind: 'msg', header, flags, command: body };
}

function parseOpQuery(header: Header, msg: Buffer): Request {
  let pos = 20;
  const nul = msg.indexOf(0, pos);
  const collection = msg.toString('utf8', pos, nul);
  pos = nul + 1 + 8; // numberToSkip, numberToReturn
  const size = msg.readInt32LE(pos);
  let command = deserializeKeepingTypes(msg.subarray(pos, pos + size));
  if (command.$query && typeof command.$query === 'object') command = command.$query as Document;
  return { kind: 'query', header, collection, command };
}

let nextRequestId = 1;

function header(length: number, responseTo: number, opCode: number): Buffer {
  const h = Buffer.alloc(16);
  h.writeInt32LE(length, 0);
  h.writeInt32LE(nextRequestId++ & 0x7fffffff, 4);
  h.writeInt32LE(responseTo, 8);
  h.writeInt32LE(opCode, 12);
  return h;
}

export function encodeOpMsg(responseTo: number, reply: Document): Buffer {
  const body = BSON.serialize(reply, { ignoreUndefined: true });
  const length = 16 + 4 + 1 + body.length;
  const flags = Buffer.alloc(5);
  return Buffer.concat([header(length, responseTo, OP_MSG), flags, body], length);
}

export function encodeOpReply(responseTo: number, reply: Document): Buffer {
  const body = BSON.serialize(reply, { ignoreUndefined: true });
  const fixed = Buffer.alloc(20);
  fixed.writeInt32LE(0, 0); // responseFlags
  fixed.writeBigInt64LE(0n, 4); // cursorID
  fixed.writeInt32LE(0, 12); // startingFrom
  fixed.writeInt32LE(1, 16); // numberReturned
  const length = 16 + 20 + body.length;
  return Buffer.concat([header(length, responseTo, OP_REPLY), fixed, body], length);
}

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

export function crc32c(buf: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < buf.length; i++)
    crc = (CRC32C_TABLE[(crc ^ (buf[i] as number)) & 0xff] as number) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
