/**
 * Reads zip and tar archives (plain, gzip, zstd) entry by entry, as one shape: yauzl for zip,
 * tar-stream for tar, zlib for gzip, and Debian's `zstd -d` behind the toolkit for zstd: it streams,
 * where the WebAssembly decoders in npm decode a whole buffer in memory (see docs/jobs.md).
 */
import { closeSync, createReadStream, fstatSync, open as fsOpen, read as fsRead } from 'node:fs';
import { open as openFile } from 'node:fs/promises';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline as pipelineCb } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32, createGunzip, inflateRawSync } from 'node:zlib';
import tarStream, { type Header as TarHeader } from 'tar-stream';
import yauzl from 'yauzl';
import type { CoreContext } from '../../lib/context.js';
import { ArchiveRefusedError, DataInputError } from '../../lib/errors.js';
import { toolFilter, type ToolResult } from '../../lib/tool.js';
import { ZSTD } from '../../lib/toolTable.js';

/** A tar entry's content stream (a streamx Readable) with its header. */
interface TarSource {
  header: TarHeader;
  resume(): void;
  once(event: 'end', fn: () => void): void;
}

export type ArchiveFormat = 'zip' | 'tar' | 'tar.gz' | 'tar.zst';

export interface ArchiveEntry {
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'link' | 'other';
  /** For `other`: what it is (character-device, fifo, ...). */
  otherType?: string;
  mode?: number;
  mtime?: Date;
  /** Symlink or hard-link target. Zip symlinks keep theirs in the content: see `readLinkTarget`. */
  linkname?: string;
  /** What the header claims; never trusted for limits. */
  declaredSize: number;
  /** zip only: the CRC-32 the archive records (yauzl checks sizes, not CRCs). */
  crc32?: number;
  content(): Promise<Readable>;
  /**
   * zip only, a small entry (up to 1 MiB): its bytes, inflated at once and checked (size and CRC-32)
   * as `content` does. A stream and an inflater per entry cost more than the entry. Call it before
   * asking for the next entry: a stored entry's bytes are a view of the reader's window.
   */
  data?(): Buffer;
}

/** Detects the format from the first bytes (the file name is not trusted). */
export async function detectFormat(path: string): Promise<ArchiveFormat> {
  const fh = await openFile(path, 'r');
  const buf = Buffer.alloc(512);
  try {
    await fh.read(buf, 0, 512, 0);
  } finally {
    await fh.close();
  }
  if (buf[0] === 0x50 && buf[1] === 0x4b && (buf[2] === 3 || buf[2] === 5)) return 'zip';
  if (buf[0] === 0x1f && buf[1] === 0x8b) return 'tar.gz';
  if (buf.readUInt32LE(0) === 0xfd2fb528) return 'tar.zst';
  if (buf.toString('latin1', 257, 262) === 'ustar') return 'tar';
  throw new DataInputError(
    `"${path}" is not an archive jobd can read (zip, tar, tar.gz, tar.zst): unknown leading bytes`,
  );
}

/** Counts the compressed bytes read, for progress. */
export class ByteCounter extends Transform {
  bytes = 0;
  constructor(private readonly onBytes?: (n: number) => void) {
    super();
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    this.onBytes?.(this.bytes);
    cb(null, chunk);
  }
}

/**
 * Tar entries from a file (decompressing as needed). Each entry's content must be consumed before the
 * next is produced; `done` settles when the whole input was read (and `zstd` exited).
 */
export function tarEntries(
  path: string,
  format: Exclude<ArchiveFormat, 'zip'>,
  ctx: CoreContext,
  onCompressedBytes?: (n: number) => void,
): { entries: AsyncIterable<ArchiveEntry>; done: Promise<unknown> } {
  const extract = tarStream.extract();
  const stages: Array<NodeJS.ReadableStream | NodeJS.WritableStream | NodeJS.ReadWriteStream> = [
    createReadStream(path, { highWaterMark: 1 << 20 }),
    new ByteCounter(onCompressedBytes),
  ];
  let filterDone: Promise<ToolResult | undefined> = Promise.resolve(undefined);
  if (format === 'tar.gz') stages.push(createGunzip({ chunkSize: 1 << 18 }));
  if (format === 'tar.zst') {
    const f = toolFilter({ tool: ZSTD, args: ['-d', '-q', '-c'] }, ctx);
    stages.push(f.duplex);
    filterDone = f.done;
  }
  const piped = (pipeline as unknown as (s: unknown[], o: { signal: AbortSignal }) => Promise<void>)(
    [...stages, extract],
    { signal: ctx.signal },
  );
  // Settles only when every stage has (zstd's group gone too), so no caller returns with a tool running.
  const settled = Promise.allSettled([piped, filterDone]);
  const done = settled.then((rs) => {
    const bad = rs.find((r) => r.status === 'rejected');
    if (bad) throw bad.reason;
  });
  done.catch(() => {});
  async function* entries(): AsyncGenerator<ArchiveEntry> {
    let finished = false;
    try {
      yield* readEntries();
      finished = true;
    } finally {
      // Left early (an entry refused, an abort): stop reading and wait for the stages to wind down.
      if (!finished) {
        extract.destroy();
        await settled;
      }
    }
    await done;
  }
  async function* readEntries(): AsyncGenerator<ArchiveEntry> {
    for await (const entry of extract as unknown as AsyncIterable<TarSource>) {
      const h = entry.header;
      let consumed = false;
      const ended = new Promise<void>((res) => entry.once('end', () => res()));
      const type: ArchiveEntry['type'] =
        h.type === 'file' || h.type === 'contiguous-file'
          ? 'file'
          : h.type === 'directory' || h.type === 'symlink' || h.type === 'link'
            ? h.type
            : 'other';
      yield {
        name: h.name,
        type,
        ...(type === 'other' ? { otherType: h.type ?? 'unknown' } : {}),
        ...(h.mode !== undefined ? { mode: h.mode } : {}),
        ...(h.mtime ? { mtime: h.mtime } : {}),
        ...(h.linkname ? { linkname: h.linkname } : {}),
        declaredSize: h.size ?? 0,
        content: async () => {
          consumed = true;
          return entry as unknown as Readable;
        },
      };
      // tar-stream hands out the next entry only once this one was read to its end.
      if (!consumed) entry.resume();
      await ended;
    }
  }
  return { entries: entries(), done };
}

/** Entries up to this size (declared, and inflating is bounded by it) are inflated in one call. */
export const ZIP_SMALL_ENTRY = 1 << 20;

/** Bytes of the zip read at once into a window (its central directory, or its entries' data). */
const ZIP_WINDOW = 1 << 20;

async function openZip(path: string): Promise<{ zip: yauzl.ZipFile; reader: WindowReader }> {
  const options = { lazyEntries: true, validateEntrySizes: true, decodeStrings: true, autoClose: false };
  const fd = await new Promise<number>((resolve, reject) =>
    fsOpen(path, 'r', (err, fd) => (err ? reject(err) : resolve(fd))),
  );
  let reader: WindowReader;
  try {
    const { size } = fstatSync(fd);
    reader = new WindowReader(fd, size);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  return new Promise<yauzl.ZipFile>((resolve, reject) => {
    yauzl.fromRandomAccessReader(reader, reader.size, options, (err, zip) =>
      err ? reject(err) : resolve(zip),
    );
  }).then(
    (zip) => ({ zip, reader }),
    (err: unknown) => {
      reader.closeFd();
      throw err;
    },
  );
}

/**
 * The zip file read by yauzl through its documented reader interface, a window of about 1 MiB at a
 * time into buffers kept for the whole run: one for the central directory, one for the entries'
 * data, each read in order. A small entry costs no read of its own (a read per central record, local
 * header and entry's data was most of the time a small entry took), and the whole file is never held
 * in memory: reading a 40 MiB zip into a new buffer cost ~200 ms of system time here, the kernel
 * faulting in its fresh pages, about as much as creating its 10,000 files.
 */
class WindowReader extends yauzl.RandomAccessReader {
  /** Most recently used first. */
  private readonly windows: Array<{ start: number; end: number; buf: Buffer }> = [
    { start: 0, end: 0, buf: Buffer.alloc(0) },
    { start: 0, end: 0, buf: Buffer.alloc(0) },
  ];
  private closed = false;

  constructor(
    private readonly fd: number,
    readonly size: number,
  ) {
    super();
  }

  /** The bytes [start, end) if a window holds them (valid until the next `load`), else null. */
  slice(start: number, end: number): Buffer | null {
    for (let i = 0; i < this.windows.length; i++) {
      const w = this.windows[i]!;
      if (start >= w.start && end <= w.end) {
        if (i) this.windows.unshift(this.windows.splice(i, 1)[0]!);
        return w.buf.subarray(start - w.start, end - w.start);
      }
    }
    return null;
  }

  /** Reads a window that starts at `start` and holds at least [start, end) (less at the end of the file). */
  async load(start: number, end: number): Promise<void> {
    const w = this.windows.pop()!; // the least recently used
    w.start = w.end = 0;
    const want = Math.min(this.size, Math.max(end, start + ZIP_WINDOW)) - start;
    if (w.buf.length < want) w.buf = Buffer.allocUnsafe(Math.max(want, ZIP_WINDOW));
    let got = 0;
    while (got < want) {
      const n = await new Promise<number>((resolve, reject) =>
        fsRead(this.fd, w.buf, got, want - got, start + got, (err, n) => (err ? reject(err) : resolve(n))),
      );
      if (n === 0) break;
      got += n;
    }
    w.start = start;
    w.end = start + got;
    this.windows.unshift(w);
  }

  override read(
    buffer: Buffer,
    offset: number,
    length: number,
    position: number,
    callback: (err: Error | null, bytesRead?: number) => void,
  ): void {
    const end = Math.min(position + length, this.size);
    const copy = (): number => {
      const src = position < end ? this.slice(position, end) : null;
      return src ? src.copy(buffer, offset) : 0;
    };
    if (position >= end || this.slice(position, end)) {
      const n = copy();
      queueMicrotask(() => callback(null, n));
      return;
    }
    this.load(position, end).then(
      () => callback(null, copy()),
      (err: Error) => callback(err),
    );
  }

  override _readStreamForRange(start: number, end: number): Readable {
    // A large entry streams from the file in 64 KiB reads at its own positions (pread). Not an
    // fs.ReadStream: destroying one (yauzl does, when an entry is abandoned) closes its fd, the zip's.
    const fd = this.fd;
    let at = start;
    return new Readable({
      read() {
        const n = Math.min(1 << 16, end - at);
        if (n <= 0) return void this.push(null);
        const buf = Buffer.allocUnsafe(n);
        fsRead(fd, buf, 0, n, at, (err, got) => {
          if (err) return void this.destroy(err);
          if (got === 0) return void this.destroy(new Error('unexpected end of the zip file'));
          at += got;
          this.push(got === n ? buf : buf.subarray(0, got));
        });
      },
    });
  }

  /** yauzl closes its reader once the zip is closed and no entry stream is left open. */
  override close(callback: (err: Error | null) => void): void {
    this.closeFd();
    queueMicrotask(() => callback(null));
  }

  closeFd(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}

/**
 * A small stored or deflated entry's raw bytes, read through the reader's windows, with the checks
 * yauzl makes when it streams one (local header, bounds). The bytes stay valid until the reader loads
 * another window: they are used before the next entry is read. Returned at once when the window holds
 * them (most entries), so an entry costs no promise here.
 */
function smallEntryRaw(reader: WindowReader, e: yauzl.Entry): Buffer | Promise<Buffer> {
  const at = e.relativeOffsetOfLocalHeader;
  if (at + 30 > reader.size)
    throw new ArchiveRefusedError(`zip entry "${e.fileName}": invalid local file header`);
  const head = reader.slice(at, at + 30);
  if (!head) return reader.load(at, at + 30 + e.compressedSize).then(() => smallEntryRaw(reader, e));
  if (head.readUInt32LE(0) !== 0x04034b50)
    throw new ArchiveRefusedError(`zip entry "${e.fileName}": invalid local file header`);
  const start = at + 30 + head.readUInt16LE(26) + head.readUInt16LE(28);
  const end = start + e.compressedSize;
  if (end > reader.size)
    throw new ArchiveRefusedError(`zip entry "${e.fileName}": data past the end of the file`);
  const raw = reader.slice(start, end);
  if (raw) return raw;
  return reader.load(start, end).then(() => reader.slice(start, end)!);
}

/**
 * A small entry's bytes from its raw bytes, inflated at once and checked (size and CRC-32). Inflating
 * stops past the declared size, so a lying header cannot make it allocate more.
 */
function smallEntryData(raw: Buffer, e: yauzl.Entry): Buffer {
  let data: Buffer;
  if (e.compressionMethod === 0) data = raw;
  else {
    try {
      // One output buffer of the entry's size (+1, so a full one needs no second look for more bytes)
      // rather than the default 16 KiB: 10,000 small entries took ~30% less CPU to inflate.
      data = inflateRawSync(raw, {
        maxOutputLength: Math.max(1, e.uncompressedSize),
        chunkSize: Math.max(64, e.uncompressedSize + 1),
      });
    } catch (err) {
      throw new ArchiveRefusedError(
        `zip entry "${e.fileName}": ${(err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' ? 'inflates past its declared size' : `cannot be inflated (${(err as Error).message})`}`,
      );
    }
  }
  if (data.length !== e.uncompressedSize)
    throw new ArchiveRefusedError(
      `zip entry "${e.fileName}": ${data.length} bytes, the archive says ${e.uncompressedSize}`,
    );
  const crc = crc32(data);
  if (crc !== e.crc32)
    throw new ArchiveRefusedError(
      `zip entry "${e.fileName}": CRC-32 ${crc.toString(16)}, the archive says ${e.crc32.toString(16)}`,
    );
  return data;
}

const S_IFMT = 0o170000;
const ZIP_TYPES: Record<number, string> = {
  0o120000: 'symlink',
  0o040000: 'directory',
  0o020000: 'character-device',
  0o060000: 'block-device',
  0o010000: 'fifo',
  0o140000: 'socket',
};

/** Zip entries in central-directory order; `count` is the number the archive declares. */
export async function zipEntries(
  path: string,
): Promise<{ count: number; entries: AsyncIterable<ArchiveEntry> }> {
  let zip: yauzl.ZipFile;
  let reader: WindowReader;
  try {
    ({ zip, reader } = await openZip(path));
  } catch (err) {
    throw refusedZip(err);
  }
  async function* entries(): AsyncGenerator<ArchiveEntry> {
    // yauzl's own iterator: one promise per entry, its listeners set once for the whole run.
    const each = zip.eachEntry() as AsyncIterableIterator<yauzl.Entry>;
    try {
      for (;;) {
        let next: IteratorResult<yauzl.Entry>;
        try {
          next = await each.next();
        } catch (err) {
          throw refusedZip(err);
        }
        if (next.done) return;
        const entry = next.value;
        const unixMode = entry.versionMadeBy >> 8 === 3 ? entry.externalFileAttributes >>> 16 : 0;
        const fmt = unixMode & S_IFMT;
        let type: ArchiveEntry['type'] = entry.fileName.endsWith('/') ? 'directory' : 'file';
        let otherType: string | undefined;
        if (fmt && fmt !== 0o100000) {
          const t = ZIP_TYPES[fmt] ?? 'unknown';
          if (t === 'symlink' || t === 'directory') type = t;
          else {
            type = 'other';
            otherType = t;
          }
        }
        const small =
          type === 'file' &&
          (entry.compressionMethod === 0 || entry.compressionMethod === 8) &&
          (entry.generalPurposeBitFlag & 1) === 0 && // encrypted: yauzl's stream refuses it
          entry.uncompressedSize <= ZIP_SMALL_ENTRY &&
          entry.compressedSize <= ZIP_SMALL_ENTRY;
        let raw: Buffer | Promise<Buffer> | null = small ? smallEntryRaw(reader, entry) : null;
        if (raw instanceof Promise) raw = await raw;
        const mode = unixMode ? unixMode & 0o7777 : undefined;
        yield raw
          ? new SmallZipEntry(zip, entry, type, otherType, mode, raw)
          : new ZipEntry(zip, entry, type, otherType, mode);
      }
    } finally {
      await each.return?.();
      zip.close();
    }
  }
  return { count: zip.entryCount, entries: entries() };
}

/**
 * A zip entry as an ArchiveEntry: one object of one shape per entry, its methods on the prototype
 * (two closures per entry were a measurable part of what 10,000 small entries cost).
 */
class ZipEntry implements ArchiveEntry {
  readonly name: string;
  readonly mtime: Date;
  readonly declaredSize: number;
  readonly crc32: number;

  constructor(
    private readonly zip: yauzl.ZipFile,
    protected readonly entry: yauzl.Entry,
    readonly type: ArchiveEntry['type'],
    readonly otherType: string | undefined,
    readonly mode: number | undefined,
  ) {
    this.name = entry.fileName;
    this.mtime = entry.getLastModDate();
    this.declaredSize = entry.uncompressedSize;
    this.crc32 = entry.crc32;
  }

  content(): Promise<Readable> {
    const { zip, entry } = this;
    return new Promise<Readable>((resolve, reject) =>
      zip.openReadStream(entry, (err, stream) => (err ? reject(refusedZip(err)) : resolve(stream))),
    ).then((s) => {
      // yauzl checks sizes but not CRC-32: check it here, as the bytes go by.
      const checked = crcCheck(entry.crc32, entry.fileName);
      pipelineCb(s, checked, () => {});
      return checked;
    });
  }
}

/** A small entry: its raw bytes are in the reader's window (see ArchiveEntry.data). */
class SmallZipEntry extends ZipEntry {
  constructor(
    zip: yauzl.ZipFile,
    entry: yauzl.Entry,
    type: ArchiveEntry['type'],
    otherType: string | undefined,
    mode: number | undefined,
    private readonly raw: Buffer,
  ) {
    super(zip, entry, type, otherType, mode);
  }

  data(): Buffer {
    return smallEntryData(this.raw, this.entry);
  }
}

/** yauzl's errors (a bad header, a CRC or size mismatch) are refusals; file-system errors are not. */
export function refusedZip(err: unknown): Error {
  if ((err as { code?: unknown }).code !== undefined) return err as Error;
  if (err instanceof ArchiveRefusedError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new ArchiveRefusedError(`zip: ${msg}`);
}

/** A symlink's target kept as an entry's content (zip), read with a small bound. */
export async function readLinkTarget(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of stream) {
    size += (c as Buffer).length;
    if (size > 4096) throw new ArchiveRefusedError('a symlink target longer than 4096 bytes');
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Passes bytes through and fails at the end if their CRC-32 differs from the archive's. */
function crcCheck(expected: number, name: string): Transform {
  let crc = 0;
  return new Transform({
    transform(chunk: Buffer, _e, cb) {
      crc = crc32(chunk, crc);
      cb(null, chunk);
    },
    flush(cb) {
      cb(
        crc === expected
          ? null
          : new ArchiveRefusedError(
              `zip entry "${name}": CRC-32 ${crc.toString(16)}, the archive says ${expected.toString(16)}`,
            ),
      );
    },
  });
}
