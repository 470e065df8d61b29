/**
 * The MongoDB wire protocol: message framing, OP_MSG (with document sequences, checksums and
 * moreToCome), and the legacy OP_QUERY handshake answered with OP_REPLY.
 *
 * A malformed message gets what mongod gives it: a frame it cannot make sense of (a bad length, an
 * unknown opcode, a section running past the end, a bad checksum, a flag it must understand but does
 * not) closes the connection; a well-framed message whose BSON is invalid, or whose command is over
 * the size limit, gets an error reply.
 */
import { BSON, Binary, Long, Timestamp, type Document } from 'bson';
import { CommandError } from './errors.js';
import { MAX_INTERNAL_BSON_SIZE, MAX_MESSAGE_SIZE_BYTES, bsonSize, objectTooLarge } from './limits.js';
import { deserializeKeepingTypes } from './numbers.js';
import { decodeRequestDocument } from './wireDecode.js';

export const OP_REPLY = 1;
export const OP_QUERY = 2004;
export const OP_COMPRESSED = 2012;
export const OP_MSG = 2013;

export const MSG_CHECKSUM_PRESENT = 1 << 0;
export const MSG_MORE_TO_COME = 1 << 1;
export const MSG_EXHAUST_ALLOWED = 1 << 16;

export const HEADER_BYTES = 16;

export interface Header {
  length: number;
  requestId: number;
  responseTo: number;
  opCode: number;
}

export type Request =
  | { kind: 'msg'; header: Header; flags: number; command: Document }
  | { kind: 'query'; header: Header; collection: string; command: Document }
  /** A well-framed message that is answered with an error instead of being run. */
  | { kind: 'invalid'; header: Header; replyAs: 'msg' | 'query'; silent: boolean; error: CommandError };

/** A message that cannot be answered: the connection is closed. */
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

/** Whether a length announced by a message header can be read at all (mongod closes otherwise). */
export function validMessageLength(length: number): boolean {
  return length >= HEADER_BYTES && length <= MAX_MESSAGE_SIZE_BYTES;
}

export function parseMessage(msg: Buffer): Request {
  if (msg.length < HEADER_BYTES) throw new ProtocolError(`message of ${msg.length} bytes has no header`);
  const header = readHeader(msg);
  if (header.length !== msg.length)
    throw new ProtocolError(`message length ${header.length} does not match the ${msg.length} bytes read`);
  if (header.opCode === OP_MSG) return parseOpMsg(header, msg);
  if (header.opCode === OP_QUERY) return parseOpQuery(header, msg);
  if (header.opCode === OP_COMPRESSED)
    throw new ProtocolError('OP_COMPRESSED is not supported: the server advertises no compressors');
  throw new ProtocolError(`Unsupported opCode ${header.opCode}`);
}

/** The extent of the BSON document at `pos`, checked to lie within `end`. */
function documentAt(msg: Buffer, pos: number, end: number, what: string): Buffer {
  if (pos + 5 > end) throw new ProtocolError(`${what} is truncated`);
  const size = msg.readInt32LE(pos);
  if (size < 5 || pos + size > end)
    throw new ProtocolError(`${what} declares ${size} bytes but ${end - pos} remain in the message`);
  return msg.subarray(pos, pos + size);
}

function decode(bytes: Buffer, what: string): Document {
  let doc: Document;
  try {
    doc = decodeRequestDocument(bytes) ?? deserializeKeepingTypes(bytes);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new CommandError('InvalidBSON', `${what} is not valid BSON: ${reason}`);
  }
  // A command may exceed a document by the allowance for its own fields, and no more.
  if (bytes.length > MAX_INTERNAL_BSON_SIZE) throw objectTooLarge(bytes.length, doc);
  return doc;
}

function parseOpMsg(header: Header, msg: Buffer): Request {
  if (msg.length < HEADER_BYTES + 5)
    throw new ProtocolError('OP_MSG is too short for its flags and a section');
  const flags = msg.readUInt32LE(16);
  let end = msg.length;
  if (flags & MSG_CHECKSUM_PRESENT) {
    end -= 4;
    if (end < HEADER_BYTES + 5) throw new ProtocolError('OP_MSG is too short for its checksum');
    const expected = msg.readUInt32LE(end);
    const actual = crc32c(msg.subarray(0, end));
    if (expected !== actual) throw new ProtocolError('OP_MSG checksum mismatch');
  }
  // Bits 0-15 are required: a set bit we do not know must fail the message.
  const unknownRequired = flags & 0xffff & ~(MSG_CHECKSUM_PRESENT | MSG_MORE_TO_COME);
  if (unknownRequired) throw new ProtocolError(`Unsupported OP_MSG flag bits ${unknownRequired}`);
  let pos = 20;
  let bodyBytes: Buffer | undefined;
  const sequences: Array<[string, Buffer[]]> = [];
  while (pos < end) {
    const kind = msg.readUInt8(pos);
    pos += 1;
    if (kind === 0) {
      if (bodyBytes) throw new ProtocolError('OP_MSG has more than one body section');
      bodyBytes = documentAt(msg, pos, end, 'OP_MSG body section');
      pos += bodyBytes.length;
    } else if (kind === 1) {
      if (pos + 4 > end) throw new ProtocolError('OP_MSG document sequence is truncated');
      const size = msg.readInt32LE(pos);
      const sectionEnd = pos + size;
      if (size < 5 || sectionEnd > end)
        throw new ProtocolError(`OP_MSG document sequence declares ${size} bytes but ${end - pos} remain`);
      let p = pos + 4;
      const nul = msg.indexOf(0, p);
      if (nul < 0 || nul >= sectionEnd) throw new ProtocolError('Malformed document sequence identifier');
      const id = msg.toString('utf8', p, nul);
      p = nul + 1;
      const docs: Buffer[] = [];
      while (p < sectionEnd) {
        const bytes = documentAt(msg, p, sectionEnd, `document ${docs.length} of sequence '${id}'`);
        docs.push(bytes);
        p += bytes.length;
      }
      sequences.push([id, docs]);
      pos = sectionEnd;
    } else {
      throw new ProtocolError(`Unknown OP_MSG section kind ${kind}`);
    }
  }
  if (!bodyBytes) throw new ProtocolError('OP_MSG has no body section');
  const silent = (flags & MSG_MORE_TO_COME) !== 0;
  try {
    const body = decode(bodyBytes, 'OP_MSG body');
    for (const [id, parts] of sequences) {
      const docs = parts.map((bytes, i) => decode(bytes, `document ${i} of sequence '${id}'`));
      const existing = body[id] as unknown;
      if (Array.isArray(existing)) existing.push(...docs);
      else body[id] = docs;
    }
    return { kind: 'msg', header, flags, command: body };
  } catch (err) {
    return { kind: 'invalid', header, replyAs: 'msg', silent, error: contentError(err) };
  }
}

function parseOpQuery(header: Header, msg: Buffer): Request {
  let pos = 20;
  const nul = msg.indexOf(0, pos);
  if (msg.length < pos || nul < 0) throw new ProtocolError('OP_QUERY has no collection name');
  const collection = msg.toString('utf8', pos, nul);
  pos = nul + 1 + 8; // numberToSkip, numberToReturn
  const bytes = documentAt(msg, pos, msg.length, 'OP_QUERY query');
  try {
    let command = decode(bytes, 'OP_QUERY query');
    if (command.$query && typeof command.$query === 'object') command = command.$query as Document;
    return { kind: 'query', header, collection, command };
  } catch (err) {
    return { kind: 'invalid', header, replyAs: 'query', silent: false, error: contentError(err) };
  }
}

function contentError(err: unknown): CommandError {
  if (err instanceof CommandError) return err;
  return new CommandError('InvalidBSON', err instanceof Error ? err.message : String(err));
}

let nextRequestId = 1;

/** A message of `fixed` bytes after the header, then `body`: one buffer, written once. */
function frame(responseTo: number, opCode: number, fixed: number, body: Buffer): Buffer {
  const length = HEADER_BYTES + fixed + body.length;
  const out = Buffer.allocUnsafe(length);
  out.writeInt32LE(length, 0);
  out.writeInt32LE(nextRequestId++ & 0x7fffffff, 4);
  out.writeInt32LE(responseTo, 8);
  out.writeInt32LE(opCode, 12);
  out.fill(0, HEADER_BYTES, HEADER_BYTES + fixed);
  body.copy(out, HEADER_BYTES + fixed);
  return out;
}

const SERIALIZE_OPTIONS = { ignoreUndefined: true };

/**
 * A reply's BSON. The serializer writes into a fixed 17 MiB buffer and cuts short, silently, what does
 * not fit; any reply within the limit fits, and one that comes out over the limit is measured and
 * refused with BSONObjectTooLarge instead of being sent cut.
 */
export function encodeBody(reply: Document): Buffer {
  let out: Uint8Array | undefined;
  try {
    out = BSON.serialize(reply, SERIALIZE_OPTIONS);
  } catch (err) {
    // A value past the end of the buffer throws rather than being cut.
    if (!(err instanceof RangeError)) throw err;
  }
  if (out && out.length <= MAX_INTERNAL_BSON_SIZE) return Buffer.from(out.buffer, out.byteOffset, out.length);
  const size = bsonSize(reply);
  if (size > MAX_INTERNAL_BSON_SIZE) throw objectTooLarge(size, reply);
  throw new Error(`a reply of ${size} bytes could not be encoded`);
}

/**
 * The fields every reply ends with, operationTime and $clusterTime, as BSON elements (no document
 * frame, no terminator), with the offsets of the two timestamps: a reply appends a copy with its
 * time patched in instead of serializing the same small documents afresh for every command.
 */
const CLUSTER_TIME_SENTINEL = new Timestamp({ t: 0x7eadbeef, i: 0x7acecafe });
const CLUSTER_TIME_FIELDS = (() => {
  const doc = BSON.serialize({
    operationTime: CLUSTER_TIME_SENTINEL,
    $clusterTime: {
      clusterTime: CLUSTER_TIME_SENTINEL,
      signature: { hash: new Binary(Buffer.alloc(20), 0), keyId: Long.fromNumber(0) },
    },
  });
  const elements = Buffer.from(doc.subarray(4, doc.length - 1));
  const mark = Buffer.alloc(8);
  mark.writeUInt32LE(CLUSTER_TIME_SENTINEL.i, 0);
  mark.writeUInt32LE(CLUSTER_TIME_SENTINEL.t, 4);
  const first = elements.indexOf(mark);
  const second = elements.indexOf(mark, first + 8);
  if (first < 0 || second < 0) throw new Error('cluster time template has no timestamp slots');
  return { elements, slots: [first, second] as const };
})();

/**
 * A reply's BSON with operationTime and $clusterTime (both `opTime`) appended, from `bare`, the reply
 * encoded without them (encodeBody), which must not have either field. The same bytes as encoding the
 * reply with the two fields added last; undefined when the result would be over the limit.
 */
export function withClusterTime(bare: Buffer, opTime: Timestamp): Buffer | undefined {
  const { elements, slots } = CLUSTER_TIME_FIELDS;
  const length = bare.length + elements.length;
  if (length > MAX_INTERNAL_BSON_SIZE) return undefined;
  const out = Buffer.allocUnsafe(length);
  bare.copy(out, 0, 0, bare.length - 1);
  const at = bare.length - 1;
  elements.copy(out, at);
  out[length - 1] = 0;
  out.writeInt32LE(length, 0);
  const low = opTime.low >>> 0;
  const high = opTime.high >>> 0;
  for (const slot of slots) {
    out.writeUInt32LE(low, at + slot);
    out.writeUInt32LE(high, at + slot + 4);
  }
  return out;
}

/** OP_MSG with flags 0 and the body as its one section (kind 0). */
export function encodeOpMsg(responseTo: number, body: Buffer): Buffer {
  return frame(responseTo, OP_MSG, 5, body);
}

/** OP_REPLY of one document: responseFlags, cursorID and startingFrom 0, numberReturned 1. */
export function encodeOpReply(responseTo: number, body: Buffer): Buffer {
  const out = frame(responseTo, OP_REPLY, 20, body);
  out.writeInt32LE(1, HEADER_BYTES + 16);
  return out;
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
