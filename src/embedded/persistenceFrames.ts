/**
 * On-disk framing shared by the log and the snapshot files of a durable data directory.
 *
 *   file   = header (32 bytes) frame*
 *   header = magic "JOBDEMB\0" | version u32 | kind u32 | generation u64 | reserved u32 | crc32 u32
 *   frame  = length u32 | crc32 u32 | payload (length bytes)
 *   payload = tag u8 | BSON document*          (each BSON document carries its own int32 length)
 *
 * All integers are little-endian. A frame's crc32 covers its length field and its payload, so a
 * torn write, a zero-filled block or flipped bits all fail the check and end the readable prefix.
 */
import { closeSync, fstatSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import {
  calculateObjectSize,
  deserialize,
  serialize,
  setInternalBufferSize,
  type DeserializeOptions,
  type Document,
} from 'bson';

export const FILE_MAGIC = Buffer.from('JOBDEMB\0', 'latin1');
export const FORMAT_VERSION = 1;
export const HEADER_BYTES = 32;
export const FRAME_HEADER_BYTES = 8;

export const FileKind = { log: 1, snapshot: 2 } as const;
export type FileKind = (typeof FileKind)[keyof typeof FileKind];

/** Payload tags. */
export const Tag = {
  /** log: the records of one append() */
  records: 0x52,
  /** snapshot: one collection's metadata */
  collection: 0x43,
  /** snapshot: documents of the collection last announced */
  documents: 0x44,
  /** snapshot: trailer with counts; a snapshot without it is incomplete */
  end: 0x45,
} as const;

const SERIALIZE_OPTIONS = { checkKeys: false, serializeFunctions: false, ignoreUndefined: false } as const;

/**
 * bson's serialize() encodes into a shared buffer of at least 17 MiB and copies the result out. A
 * larger document overruns that buffer: some shapes throw a RangeError, others come out silently
 * truncated, with a length prefix that promises bytes never written. A result shorter than the
 * shared buffer cannot have overrun it, so it is exact.
 */
const SHARED_BUFFER_BYTES = 17 * 1024 * 1024;
/** BSON lengths are int32. */
const MAX_DOCUMENT_BYTES = 0x7fffffff;
/** A frame's length field is a u32; Node buffers stop at 4 GiB too. */
const MAX_FRAME_PAYLOAD_BYTES = 0xffffffff - FRAME_HEADER_BYTES;
/** read(2)/write(2) calls are kept well below Node's 2 GiB limit per call. */
const IO_STEP_BYTES = 1024 * 1024 * 1024;

export function encodeHeader(kind: FileKind, generation: number): Buffer {
  const b = Buffer.alloc(HEADER_BYTES);
  FILE_MAGIC.copy(b, 0);
  b.writeUInt32LE(FORMAT_VERSION, 8);
  b.writeUInt32LE(kind, 12);
  b.writeBigUInt64LE(BigInt(generation), 16);
  b.writeUInt32LE(0, 24);
  b.writeUInt32LE(crc32(b.subarray(0, 28)), 28);
  return b;
}

/**
 * Returns the generation, or a reason the header is not one of ours. `unsupported` marks an intact
 * header of another format version: a file to be read by another build, never to be repaired.
 */
export function decodeHeader(
  b: Buffer,
  kind: FileKind,
): { generation: number } | { problem: string; unsupported?: true } {
  if (b.length < HEADER_BYTES) return { problem: `file is shorter than its ${HEADER_BYTES}-byte header` };
  if (!b.subarray(0, 8).equals(FILE_MAGIC)) return { problem: 'not a jobd-embedded data file (bad magic)' };
  if (b.readUInt32LE(28) !== crc32(b.subarray(0, 28))) return { problem: 'header checksum mismatch' };
  const version = b.readUInt32LE(8);
  if (version !== FORMAT_VERSION) {
    return {
      problem: `format version ${version} is not supported (this build reads version ${FORMAT_VERSION})`,
      unsupported: true,
    };
  }
  const actualKind = b.readUInt32LE(12);
  if (actualKind !== kind) return { problem: `file kind ${actualKind}, expected ${kind}` };
  return { generation: Number(b.readBigUInt64LE(16)) };
}

/** Encodes one document exactly, whatever its size, or throws: never bytes that decode to something else. */
export function serializeDocument(d: Document): Buffer {
  let bytes: Uint8Array | undefined;
  try {
    bytes = serialize(d, SERIALIZE_OPTIONS);
  } catch (err) {
    // An overrun of the shared buffer; anything else (a circular value, a bad key) fails again below.
    if (!(err instanceof RangeError)) throw err;
  }
  if (bytes && bytes.byteLength < SHARED_BUFFER_BYTES) {
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  return serializeLarge(d);
}

function serializeLarge(d: Document): Buffer {
  const size = calculateObjectSize(d, SERIALIZE_OPTIONS);
  if (size > MAX_DOCUMENT_BYTES) {
    throw new Error(`a document of ${size} bytes cannot be encoded (BSON documents are at most 2 GiB)`);
  }
  // Grows bson's shared buffer to this size for good: rare (the server refuses documents over
  // 16 MiB before they get here), and the only way to have bson encode more than 17 MiB.
  setInternalBufferSize(size);
  const raw = serialize(d, SERIALIZE_OPTIONS);
  const bytes = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  const problem = documentProblem(bytes, 0, bytes.length);
  if (bytes.length !== size || problem) {
    throw new Error(
      `encoding a document of ${size} bytes produced ${bytes.length} bytes${problem ? ` (${problem})` : ''}`,
    );
  }
  // Proof that it reads back, paid only by documents this large.
  deserialize(bytes);
  return bytes;
}

/** Why the BSON document at `at` (with `available` bytes left) is malformed, or undefined when it fits. */
function documentProblem(b: Buffer, at: number, available: number): string | undefined {
  if (available < 5) return 'truncated BSON document';
  const len = b.readInt32LE(at);
  if (len < 5 || len > available) return `bad BSON document length ${len}`;
  if (b[at + len - 1] !== 0) return 'BSON document does not end with a zero byte';
  return undefined;
}

/** Serialises documents into one frame: a single buffer, ready for a single write. */
export function encodeFrame(tag: number, docs: readonly Document[]): Buffer {
  return encodeFrameFromBytes(tag, docs.map(serializeDocument));
}

export function encodeFrameFromBytes(tag: number, parts: readonly Buffer[]): Buffer {
  let size = 1;
  for (const p of parts) size += p.length;
  if (size > MAX_FRAME_PAYLOAD_BYTES) {
    throw new Error(`a frame of ${size} bytes is too large (at most ${MAX_FRAME_PAYLOAD_BYTES} bytes)`);
  }
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + size);
  frame.writeUInt32LE(size, 0);
  frame[FRAME_HEADER_BYTES] = tag;
  let at = FRAME_HEADER_BYTES + 1;
  for (const p of parts) {
    p.copy(frame, at);
    at += p.length;
  }
  frame.writeUInt32LE(crc32(frame.subarray(FRAME_HEADER_BYTES), crc32(frame.subarray(0, 4))), 4);
  return frame;
}

export function decodeDocuments(payload: Buffer, options: DeserializeOptions): Document[] {
  const docs: Document[] = [];
  let at = 1;
  while (at < payload.length) {
    const problem = documentProblem(payload, at, payload.length - at);
    if (problem) throw new Error(`${problem} at byte ${at} of the frame`);
    const len = payload.readInt32LE(at);
    docs.push(deserialize(payload.subarray(at, at + len), options));
    at += len;
  }
  return docs;
}

/** True when the payload is a tag followed by BSON documents that fill it exactly (no decoding). */
export function payloadIsTiled(payload: Buffer): boolean {
  let at = 1;
  while (at < payload.length) {
    if (documentProblem(payload, at, payload.length - at)) return false;
    at += payload.readInt32LE(at);
  }
  return at === payload.length;
}

export interface ScanResult {
  /** Offset just past the last intact frame. */
  goodEnd: number;
  fileSize: number;
  /** Intact frames read before goodEnd. */
  frames: number;
  /** Why reading stopped before the end of the file, if it did. */
  problem?: string;
  /** The frame at goodEnd is intact (its checksum holds) but could not be used: never a torn write. */
  unreadable?: boolean;
  /** Where the frame at goodEnd ends by its length field, when it fits in the file but fails its checksum. */
  badFrameEnd?: number;
}

const READ_CHUNK = 8 * 1024 * 1024;
/** The smallest frame that holds a document: header, tag, and an empty BSON document. */
const MIN_FRAME_BYTES = FRAME_HEADER_BYTES + 1 + 5;

/** Reads `n` bytes at `pos` into a fresh buffer (shorter only if the file is). */
function readAt(fd: number, pos: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let got = 0;
  while (got < n) {
    const r = readSync(fd, b, got, Math.min(n - got, IO_STEP_BYTES), pos + got);
    if (r === 0) break;
    got += r;
  }
  return b.subarray(0, got);
}

/** Reads of one open file through a large window, so a file of many small frames costs few system calls. */
class FileWindow {
  buf: Buffer = Buffer.alloc(0);
  /** File offset of buf[0]. */
  pos = 0;
  constructor(
    readonly fd: number,
    readonly size: number,
  ) {}

  /** Makes buf cover [at, at + n); a fresh buffer per refill, since decoded values may keep views into it. */
  cover(at: number, n: number): void {
    if (at >= this.pos && at + n <= this.pos + this.buf.length) return;
    this.buf = readAt(this.fd, at, Math.min(Math.max(n, READ_CHUNK), this.size - at));
    this.pos = at;
    if (this.buf.length < n)
      throw new Error(`the file ended at offset ${at + this.buf.length} while being read`);
  }

  bytes(at: number, n: number): Buffer {
    this.cover(at, n);
    return this.buf.subarray(at - this.pos, at - this.pos + n);
  }
}

function withFile<T>(path: string, f: (w: FileWindow) => T): T {
  const fd = openSync(path, 'r');
  try {
    return f(new FileWindow(fd, fstatSync(fd).size));
  } finally {
    closeSync(fd);
  }
}

/** The payload of the frame at `at` if that frame is whole and its checksum holds, else why not. */
function readFrame(w: FileWindow, at: number): { payload: Buffer } | { problem: string; end?: number } {
  if (at + FRAME_HEADER_BYTES > w.size) return { problem: `incomplete frame header at offset ${at}` };
  const head = w.bytes(at, FRAME_HEADER_BYTES);
  const len = head.readUInt32LE(0);
  const expected = head.readUInt32LE(4);
  if (len < 1 || at + FRAME_HEADER_BYTES + len > w.size) {
    return { problem: `incomplete frame at offset ${at} (length ${len})` };
  }
  const lenBytes = Buffer.from(head.subarray(0, 4));
  const payload = w.bytes(at + FRAME_HEADER_BYTES, len);
  if (crc32(payload, crc32(lenBytes)) !== expected) {
    return { problem: `checksum mismatch in frame at offset ${at}`, end: at + FRAME_HEADER_BYTES + len };
  }
  return { payload };
}

/**
 * Reads intact frames from `start` in order, calling onFrame for each; stops at the first frame that is
 * incomplete or fails its checksum (or that onFrame rejects by throwing).
 */
export function scanFrames(
  path: string,
  start: number,
  onFrame: (tag: number, payload: Buffer, offset: number) => void,
): ScanResult {
  return withFile(path, (w) => {
    let at = start;
    let frames = 0;
    while (at < w.size) {
      const frame = readFrame(w, at);
      if ('problem' in frame) {
        return {
          goodEnd: at,
          fileSize: w.size,
          frames,
          problem: frame.problem,
          ...(frame.end !== undefined ? { badFrameEnd: frame.end } : {}),
        };
      }
      try {
        onFrame(frame.payload[0] ?? -1, frame.payload, at);
      } catch (err) {
        return {
          goodEnd: at,
          fileSize: w.size,
          frames,
          problem: `unreadable frame at offset ${at}: ${(err as Error).message}`,
          unreadable: true,
        };
      }
      frames++;
      at += FRAME_HEADER_BYTES + frame.payload.length;
    }
    return { goodEnd: at, fileSize: w.size, frames };
  });
}

/** True when every byte from `from` to the end of the file is zero (blocks never written before a power loss). */
export function zeroesFrom(path: string, from: number): boolean {
  return withFile(path, (w) => {
    for (let at = from; at < w.size; at += READ_CHUNK) {
      const n = Math.min(READ_CHUNK, w.size - at);
      const b = w.bytes(at, n);
      for (let i = 0; i < n; i++) if (b[i] !== 0) return false;
    }
    return true;
  });
}

export interface IntactFrames {
  /** Offset of the first intact frame found, if any. */
  first: number | undefined;
  /** Intact frames found from there on, each passed to onFrame. */
  count: number;
}

/**
 * Looks for intact frames anywhere at or after `from`, byte by byte, then frame by frame from each one
 * found. This tells a torn tail (a write cut short: nothing intact follows it) from damage in the
 * middle (intact frames follow). A candidate must have a known tag, BSON documents that fill it exactly
 * and a matching checksum, so bytes inside a document are not taken for a frame by chance.
 */
export function findIntactFrames(
  path: string,
  from: number,
  tags: ReadonlySet<number>,
  onFrame: (tag: number, payload: Buffer, offset: number) => void = () => {},
): IntactFrames {
  return withFile(path, (w) => {
    let first: number | undefined;
    let count = 0;
    let at = from;
    while (at + MIN_FRAME_BYTES <= w.size) {
      const payload = candidateAt(w, at, tags);
      if (!payload) {
        at++;
        continue;
      }
      first ??= at;
      count++;
      onFrame(payload[0] as number, payload, at);
      at += FRAME_HEADER_BYTES + payload.length;
    }
    return { first, count };
  });
}

function candidateAt(w: FileWindow, at: number, tags: ReadonlySet<number>): Buffer | undefined {
  w.cover(at, MIN_FRAME_BYTES);
  const o = at - w.pos;
  const b = w.buf;
  const len = b.readUInt32LE(o);
  if (len < MIN_FRAME_BYTES - FRAME_HEADER_BYTES || at + FRAME_HEADER_BYTES + len > w.size) return undefined;
  if (!tags.has(b[o + FRAME_HEADER_BYTES] as number)) return undefined;
  const firstDoc = b.readInt32LE(o + FRAME_HEADER_BYTES + 1);
  if (firstDoc < 5 || firstDoc > len - 1) return undefined;
  // Read the candidate apart from the window, which must stay where the byte-by-byte search is.
  const inWindow = o + FRAME_HEADER_BYTES + len <= b.length;
  const payload = inWindow
    ? b.subarray(o + FRAME_HEADER_BYTES, o + FRAME_HEADER_BYTES + len)
    : readAt(w.fd, at + FRAME_HEADER_BYTES, len);
  if (payload.length !== len || !payloadIsTiled(payload)) return undefined;
  if (crc32(payload, crc32(b.subarray(o, o + 4))) !== b.readUInt32LE(o + 4)) return undefined;
  return payload;
}

export function readHeader(path: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(HEADER_BYTES);
    const n = readSync(fd, b, 0, HEADER_BYTES, 0);
    return b.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** Writes the whole buffer at `position`; a regular file normally takes it in one call. */
export function writeFully(fd: number, buf: Buffer, position: number): void {
  let done = 0;
  while (done < buf.length) {
    done += writeSync(fd, buf, done, Math.min(buf.length - done, IO_STEP_BYTES), position + done);
  }
}

/** fsync a directory so a rename or unlink inside it is durable. Not possible on every platform. */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EBADF') throw err;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
