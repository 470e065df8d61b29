/**
 * Snapshot files: writing one, reading one back (up to any damage), and proving that a freshly written
 * one reads back as what was meant before compaction lets it replace the previous generation.
 *
 *   snapshot = header, then per collection: a collection frame and documents frames, then an end frame
 *              holding the counts; a snapshot without its end frame is incomplete
 */
import { closeSync, fsyncSync, openSync } from 'node:fs';
import { createHash, type Hash } from 'node:crypto';
import type { DeserializeOptions, Document } from 'bson';
import type { IndexSpecRecord, SnapshotCollection } from './persistenceTypes.js';
import {
  FileKind,
  HEADER_BYTES,
  Tag,
  decodeDocuments,
  decodeHeader,
  encodeFrame,
  encodeFrameFromBytes,
  encodeHeader,
  readHeader,
  scanFrames,
  serializeDocument,
  writeFully,
} from './persistenceFrames.js';
import { DataDirCorruptError } from './persistenceErrors.js';

const SNAPSHOT_FRAME_BYTES = 1024 * 1024;
export const SNAPSHOT_TAGS: ReadonlySet<number> = new Set([Tag.collection, Tag.documents, Tag.end]);

/** What a snapshot holds: sizes, counts, and a digest of every frame's payload in order ('' when not computed). */
export interface SnapshotSummary {
  bytes: number;
  frames: number;
  collections: number;
  documents: number;
  digest: string;
}

/** Writes, fsyncs and closes a complete snapshot file. */
export function writeSnapshotFile(path: string, gen: number, state: SnapshotCollection[]): SnapshotSummary {
  const fd = openSync(path, 'w');
  const hash = createHash('sha256');
  let pos = 0;
  let frames = 0;
  const put = (b: Buffer): void => {
    writeFully(fd, b, pos);
    pos += b.length;
  };
  const putFrame = (frame: Buffer): void => {
    hash.update(frame.subarray(8));
    put(frame);
    frames++;
  };
  try {
    put(encodeHeader(FileKind.snapshot, gen));
    let documents = 0;
    for (const c of state) {
      const meta: Document = { db: c.db, coll: c.coll, indexes: c.indexes };
      if (c.options !== undefined) meta.options = c.options;
      if (c.uuid !== undefined) meta.uuid = c.uuid;
      putFrame(encodeFrame(Tag.collection, [meta]));
      // Documents in frames of about SNAPSHOT_FRAME_BYTES each.
      let batch: Buffer[] = [];
      let batchBytes = 0;
      for (const d of c.docs) {
        const bytes = serializeDocument(d);
        batch.push(bytes);
        batchBytes += bytes.length;
        if (batchBytes >= SNAPSHOT_FRAME_BYTES) {
          putFrame(encodeFrameFromBytes(Tag.documents, batch));
          batch = [];
          batchBytes = 0;
        }
      }
      if (batch.length > 0) putFrame(encodeFrameFromBytes(Tag.documents, batch));
      documents += c.docs.length;
    }
    putFrame(endFrame(state.length, documents));
    fsyncSync(fd);
    return { bytes: pos, frames, collections: state.length, documents, digest: hash.digest('hex') };
  } finally {
    closeSync(fd);
  }
}

export function endFrame(collections: number, documents: number): Buffer {
  return encodeFrame(Tag.end, [{ collections, documents }]);
}

export interface SnapshotReading {
  /** The collections read (with their documents when read to load them). */
  collections: SnapshotCollection[];
  /** The intact part: up to the damage, or the whole file. */
  summary: SnapshotSummary;
  /** Where the snapshot stops being usable, if it does. */
  damage?: { offset: number; reason: string };
  /** Frames in [HEADER_BYTES, keptEnd) are whole collection and documents frames; the end frame is not among them. */
  keptEnd: number;
  /** The end frame was read and its counts match: the file is whole up to `summary.bytes`. */
  ended: boolean;
}

/**
 * Reads a snapshot up to its first damage (a header, frame or count that is not right). Throws only for
 * an intact header of a format this build does not read.
 */
export function readSnapshotFile(
  path: string,
  gen: number,
  bsonOptions: DeserializeOptions,
  purpose: 'load' | 'verify' = 'load',
): SnapshotReading {
  const keep = purpose === 'load';
  const colls: SnapshotCollection[] = [];
  // Only a verification compares digests; a load need not pay for one.
  const hash = purpose === 'verify' ? createHash('sha256') : undefined;
  const empty = (reason: string): SnapshotReading => ({
    collections: [],
    summary: { bytes: 0, frames: 0, collections: 0, documents: 0, digest: digestOf(hash) },
    damage: { offset: 0, reason },
    keptEnd: 0,
    ended: false,
  });
  const headerProblem = checkHeader(path, FileKind.snapshot, gen);
  if (headerProblem) return empty(headerProblem);

  let current: SnapshotCollection | undefined;
  let documents = 0;
  let end: { doc: Document; offset: number } | undefined;
  let keptEnd = HEADER_BYTES;
  const scan = scanFrames(path, HEADER_BYTES, (tag, payload, offset) => {
    if (end) throw new Error('data after the end frame');
    const docs = decodeDocuments(payload, bsonOptions);
    if (tag === Tag.collection) {
      const meta = docs[0] as Document;
      current = {
        db: meta.db as string,
        coll: meta.coll as string,
        indexes: meta.indexes as IndexSpecRecord[],
        docs: [],
      };
      if (meta.options !== undefined) current.options = meta.options as Document;
      if (meta.uuid !== undefined) current.uuid = meta.uuid as SnapshotCollection['uuid'];
      colls.push(current);
    } else if (tag === Tag.documents) {
      if (!current) throw new Error('documents before any collection');
      if (keep) for (const d of docs) current.docs.push(d);
      documents += docs.length;
    } else if (tag === Tag.end) {
      end = { doc: docs[0] ?? {}, offset };
    } else {
      throw new Error(`unexpected frame tag ${tag}`);
    }
    hash?.update(payload);
    if (tag !== Tag.end) keptEnd = offset + 8 + payload.length;
  });
  const summary = (bytes: number): SnapshotSummary => ({
    bytes,
    frames: scan.frames,
    collections: colls.length,
    documents,
    digest: digestOf(hash),
  });
  const reading = (damage?: { offset: number; reason: string }, ended = false): SnapshotReading => ({
    collections: colls,
    summary: summary(scan.goodEnd),
    ...(damage ? { damage } : {}),
    keptEnd,
    ended,
  });
  if (!end) {
    return reading({
      offset: scan.goodEnd,
      reason: scan.problem ?? 'the snapshot is incomplete (no end frame)',
    });
  }
  if (Number(end.doc.collections) !== colls.length || Number(end.doc.documents) !== documents) {
    return reading({
      offset: end.offset,
      reason:
        `its end frame counts ${String(end.doc.collections)} collections and ${String(end.doc.documents)} documents, ` +
        `but ${colls.length} and ${documents} were read`,
    });
  }
  if (scan.problem) return reading({ offset: scan.goodEnd, reason: scan.problem }, true);
  return reading(undefined, true);
}

/**
 * Reads a snapshot just written back from the file and checks it against what the writer meant: every
 * frame intact and decodable, the same counts, the same digest. Throws when it does not read back.
 */
export function verifySnapshotFile(
  path: string,
  gen: number,
  written: SnapshotSummary,
  bsonOptions: DeserializeOptions,
): void {
  const read = readSnapshotFile(path, gen, bsonOptions, 'verify');
  const fail = (why: string): never => {
    throw new Error(`the new snapshot ${path} does not read back as written: ${why}`);
  };
  if (read.damage) fail(`at offset ${read.damage.offset}: ${read.damage.reason}`);
  const r = read.summary;
  if (r.bytes !== written.bytes || r.frames !== written.frames) {
    fail(`${r.frames} frames in ${r.bytes} bytes read, ${written.frames} in ${written.bytes} written`);
  }
  if (r.collections !== written.collections || r.documents !== written.documents) {
    fail(
      `${r.collections} collections and ${r.documents} documents read, ` +
        `${written.collections} and ${written.documents} written`,
    );
  }
  if (r.digest !== written.digest) fail('its digest differs from the bytes written');
}

/** A reason the header is not right for this file, or undefined; throws for another format version. */
export function checkHeader(path: string, kind: FileKind, gen: number): string | undefined {
  const h = decodeHeader(readHeader(path), kind);
  if ('problem' in h) {
    if (h.unsupported) throw new DataDirCorruptError(path, h.problem);
    return h.problem;
  }
  if (h.generation !== gen) return `header says generation ${h.generation}, file name says ${gen}`;
  return undefined;
}

function digestOf(hash: Hash | undefined): string {
  return hash ? hash.copy().digest('hex') : '';
}
