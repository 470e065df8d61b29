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
import { deserialize, serialize, type DeserializeOptions, type Document } from 'bson';

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

/** Returns the generation, or a reason the header is not one of ours. */
export function decodeHeader(b: Buffer, kind: FileKind): { generation: number } | { problem: string } {
  if (b.length < HEADER_BYTES) return { problem: `file is shorter than its ${HEADER_BYTES}-byte header` };
  if (!b.subarray(0, 8).equals(FILE_MAGIC)) return { problem: 'not a jobd-embedded data file (bad magic)' };
  if (b.readUInt32LE(28) !== crc32(b.subarray(0, 28))) return { problem: 'header checksum mismatch' };
  const version = b.readUInt32LE(8);
  if (version !== FORMAT_VERSION) {
    return {
      problem: `format version ${version} is not supported (this build reads version ${FORMAT_VERSION})`,
    };
  }
  const actualKind = b.readUInt32LE(12);
  if (actualKind !== kind) return { problem: `file kind ${actualKind}, expected ${kind}` };
  return { generation: Number(b.readBigUInt64LE(16)) };
}

export function serializeDocument(d: Document): Buffer {
  const bytes = serialize(d, SERIALIZE_OPTIONS);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Serialises documents into one frame: a single buffer, ready for a single write. */
export function encodeFrame(tag: number, docs: readonly Document[]): Buffer {
  return encodeFrameFromBytes(tag, docs.map(serializeDocument));
}

export function encodeFrameFromBytes(tag: number, parts: readonly Buffer[]): Buffer {
  let size = 1;
  for (const p of parts) size += p.length;
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
    if (at + 5 > payload.length) throw new Error('truncated BSON document in frame');
    const len = payload.readInt32LE(at);
    if (len < 5 || at + len > payload.length) throw new Error(`bad BSON document length ${len} in frame`);
    docs.push(deserialize(payload.subarray(at, at + len), options));
    at += len;
  }
  return docs;
}

export interface ScanResult {
  /** Offset just past the last intact frame. */
  goodEnd: number;
  fileSize: number;
  /** Why reading stopped before the end of the file, if it did. */
  problem?: string;
}

const READ_CHUNK = 8 * 1024 * 1024;

/**
 * Reads intact frames from `start` in order, calling onFrame for each; stops at the first frame that is
 * incomplete or fails its checksum (or that onFrame rejects by throwing). Reads in large chunks so a log
 * of many small frames costs few system calls.
 */
export function scanFrames(
  path: string,
  start: number,
  onFrame: (tag: number, payload: Buffer, offset: number) => void,
): ScanResult {
  const fd = openSync(path, 'r');
  try {
    const fileSize = fstatSync(fd).size;
    let chunk = Buffer.alloc(0);
    let chunkPos = start;
    // A fresh buffer per refill: decoded values may keep views into it.
    const ensure = (pos: number, n: number): Buffer => {
      if (pos < chunkPos || pos + n > chunkPos + chunk.length) {
        const want = Math.min(Math.max(n, READ_CHUNK), fileSize - pos);
        chunk = Buffer.allocUnsafe(want);
        let got = 0;
        while (got < want) {
          const r = readSync(fd, chunk, got, want - got, pos + got);
          if (r === 0) break;
          got += r;
        }
        chunk = chunk.subarray(0, got);
        chunkPos = pos;
      }
      return chunk.subarray(pos - chunkPos, pos - chunkPos + n);
    };

    let at = start;
    while (at < fileSize) {
      if (at + FRAME_HEADER_BYTES > fileSize) {
        return { goodEnd: at, fileSize, problem: `incomplete frame header at offset ${at}` };
      }
      const head = ensure(at, FRAME_HEADER_BYTES);
      const len = head.readUInt32LE(0);
      const expected = head.readUInt32LE(4);
      if (len < 1 || at + FRAME_HEADER_BYTES + len > fileSize) {
        return { goodEnd: at, fileSize, problem: `incomplete frame at offset ${at} (length ${len})` };
      }
      const lenBytes = Buffer.from(head.subarray(0, 4));
      const payload = ensure(at + FRAME_HEADER_BYTES, len);
      if (crc32(payload, crc32(lenBytes)) !== expected) {
        return { goodEnd: at, fileSize, problem: `checksum mismatch in frame at offset ${at}` };
      }
      try {
        onFrame(payload[0] ?? -1, payload, at);
      } catch (err) {
        return {
          goodEnd: at,
          fileSize,
          problem: `unreadable frame at offset ${at}: ${(err as Error).message}`,
        };
      }
      at += FRAME_HEADER_BYTES + len;
    }
    return { goodEnd: at, fileSize };
  } finally {
    closeSync(fd);
  }
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
    done += writeSync(fd, buf, done, buf.length - done, position + done);
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
