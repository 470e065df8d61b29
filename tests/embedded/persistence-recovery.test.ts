import { describe, expect, it } from 'vitest';
import { appendFileSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { FRAME_HEADER_BYTES, HEADER_BYTES } from '../../src/embedded/persistenceFrames.js';
import {
  currentLogPath,
  DataDirCorruptError,
  DataDirDamagedError,
  openDurableStore,
} from '../../src/embedded/persistence.js';
import type { LogRecord } from '../../src/embedded/persistenceTypes.js';
import { useTempDirs } from '../fixtures/embedded/tempDir.js';

const tempDir = useTempDirs('recovery');

const rec = (i: number): LogRecord => ({
  op: 'insert',
  db: 'd',
  coll: 'c',
  doc: { _id: i, text: `record ${i}` },
});
const ids = (records: LogRecord[]): number[] =>
  records.map((r) => ('doc' in r ? (r.doc._id as number) : NaN));

/** A data directory with three appends; returns the log bytes and where each frame ends. */
function threeFrames(dir: string): { log: string; bytes: Buffer; ends: number[] } {
  const s = openDurableStore(dir);
  s.load();
  const ends: number[] = [];
  s.append([rec(1)]);
  ends.push(s.logBytes);
  s.append([rec(2), rec(3)]);
  ends.push(s.logBytes);
  s.append([rec(4), rec(5), rec(6)]);
  ends.push(s.logBytes);
  s.close();
  const log = currentLogPath(dir) as string;
  return { log, bytes: readFileSync(log), ends };
}

describe('durable store: a torn tail (a write cut short by a crash)', () => {
  it('drops a torn tail of every length, truncates it away, and keeps whole commands only', () => {
    const dir = tempDir();
    const { log, bytes, ends } = threeFrames(dir);
    const expected = [[], [1], [1, 2, 3], [1, 2, 3, 4, 5, 6]];
    const starts = [HEADER_BYTES, ...ends];
    for (let cut = HEADER_BYTES; cut <= bytes.length; cut++) {
      writeFileSync(log, bytes.subarray(0, cut));
      const whole = starts.filter((e) => e <= cut).length - 1;
      const goodEnd = starts[whole] as number;
      const messages: string[] = [];
      const s = openDurableStore(dir, { log: (m) => messages.push(m) });
      const state = s.load();
      s.close();
      expect(ids(state.records), `cut at ${cut}`).toEqual(expected[whole]);
      expect(state.droppedTornTail).toBe(cut !== goodEnd);
      if (cut !== goodEnd) {
        expect(state.tornTail).toMatchObject({ offset: goodEnd, droppedBytes: cut - goodEnd });
        expect(messages.join('\n')).toMatch(/dropped a torn tail of \d+ bytes/);
      } else {
        expect(messages).toEqual([]);
      }
      expect(statSync(log).size).toBe(goodEnd);
    }
  });

  it('a later append after a dropped tail is not stranded behind garbage', () => {
    const dir = tempDir();
    const { log } = threeFrames(dir);
    appendFileSync(log, Buffer.from('garbage after a crash'));
    const s = openDurableStore(dir);
    expect(s.load().droppedTornTail).toBe(true);
    s.append([rec(7)]);
    s.close();
    const again = openDurableStore(dir);
    const state = again.load();
    again.close();
    expect(state.droppedTornTail).toBe(false);
    expect(ids(state.records)).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('drops a tail of zeroes (unwritten blocks after a power loss)', () => {
    const dir = tempDir();
    const { log, ends } = threeFrames(dir);
    appendFileSync(log, Buffer.alloc(4096));
    const s = openDurableStore(dir);
    const state = s.load();
    s.close();
    expect(ids(state.records)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(statSync(log).size).toBe(ends[2]);
  });

  it('drops a last frame that fails its checksum with only zeroes after it (a power loss mid-write)', () => {
    const dir = tempDir();
    const { log, bytes, ends } = threeFrames(dir);
    const damaged = Buffer.from(bytes);
    damaged.fill(0, bytes.length - 20);
    writeFileSync(log, Buffer.concat([damaged, Buffer.alloc(4096)]));
    const s = openDurableStore(dir);
    const state = s.load();
    s.close();
    expect(ids(state.records)).toEqual([1, 2, 3]);
    expect(state.tornTail?.reason).toMatch(/checksum mismatch/);
    expect(statSync(log).size).toBe(ends[1]);
  });
});

describe('durable store: a damaged log', () => {
  /** Everything a test needs to check that a refused open changed nothing. */
  const listing = (dir: string): Record<string, string> =>
    Object.fromEntries(
      readdirSync(dir)
        .sort()
        .map((f) => [f, readFileSync(join(dir, f)).toString('base64')]),
    );

  function refused(dir: string): DataDirDamagedError {
    const before = listing(dir);
    let err: unknown;
    try {
      openDurableStore(dir).close();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DataDirDamagedError);
    expect(listing(dir)).toEqual(before);
    return err as DataDirDamagedError;
  }

  function repaired(dir: string): {
    state: ReturnType<ReturnType<typeof openDurableStore>['load']>;
    messages: string[];
  } {
    const messages: string[] = [];
    const s = openDurableStore(dir, { repair: true, log: (m) => messages.push(m) });
    const state = s.load();
    s.append([rec(7)]);
    s.close();
    return { state, messages };
  }

  it('a bad checksum with intact frames after it is damage: refused with its offset, nothing changed; --repair keeps what is before it', () => {
    const dir = tempDir();
    const { log, bytes, ends } = threeFrames(dir);
    const [end1, end2] = ends as [number, number, number];
    const damaged = Buffer.from(bytes);
    const at = end1 + Math.floor((end2 - end1) / 2);
    damaged[at] = (damaged[at] as number) ^ 0xff;
    writeFileSync(log, damaged);

    const err = refused(dir);
    expect(err).toMatchObject({ code: 'EMBEDDED_DATA_DIR_DAMAGED', dir });
    expect(err.damages).toEqual([
      expect.objectContaining({
        file: log,
        what: 'log',
        offset: end1,
        fileSize: bytes.length,
        framesKept: 1,
        framesAfter: 1,
      }),
    ]);
    expect(err.message).toContain(`${log}: checksum mismatch in frame at offset ${end1}`);
    expect(err.message).toContain(`${bytes.length - end1} bytes from offset ${end1} to the end of the file`);
    expect(err.message).toContain('the damaged frame and 1 intact frame after it');
    expect(err.message).toMatch(/Nothing has been changed.*--repair/);

    const { state, messages } = repaired(dir);
    expect(ids(state.records)).toEqual([1]);
    expect(state.droppedTornTail).toBe(false);
    const keptAs = state.repaired?.[0]?.keptAs as string;
    expect(keptAs).toMatch(new RegExp(`^${log}\\.damaged-\\d{4}-\\d\\d-\\d\\dT[\\d-]+Z$`));
    expect(readFileSync(keptAs).equals(damaged)).toBe(true);
    expect(messages.join('\n')).toContain(`repaired data directory ${dir}`);
    expect(messages.join('\n')).toContain(`kept as ${keptAs}`);

    // the repaired directory opens cleanly, without repair, with the write made after the repair
    const again = openDurableStore(dir);
    expect(ids(again.load().records)).toEqual([1, 7]);
    again.close();
  });

  it('a length field damaged in the middle, with data after the frame it claims, is damage, not a torn tail', () => {
    const dir = tempDir();
    const { log, bytes, ends } = threeFrames(dir);
    const damaged = Buffer.from(bytes);
    damaged.writeUInt32LE(3, ends[1] as number); // the third frame now claims 3 bytes
    writeFileSync(log, damaged);
    expect(refused(dir).damages[0]).toMatchObject({ offset: ends[1], framesKept: 2, framesAfter: 0 });
    expect(ids(repaired(dir).state.records)).toEqual([1, 2, 3]);
  });

  it('a frame whose checksum holds but which does not decode is damage, even as the last frame', () => {
    const dir = tempDir();
    const { log, bytes, ends } = threeFrames(dir);
    const start = ends[1] as number;
    const damaged = Buffer.from(bytes);
    // the first record's BSON length now runs past its frame; the checksum is made to match
    damaged.writeInt32LE(1 << 20, start + FRAME_HEADER_BYTES + 1);
    const payload = damaged.subarray(start + FRAME_HEADER_BYTES);
    damaged.writeUInt32LE(crc32(payload, crc32(damaged.subarray(start, start + 4))), start + 4);
    writeFileSync(log, damaged);
    const err = refused(dir);
    expect(err.damages[0]).toMatchObject({ offset: start, framesKept: 2 });
    expect(err.message).toMatch(new RegExp(`unreadable frame at offset ${start}: bad BSON document length`));
    expect(ids(repaired(dir).state.records)).toEqual([1, 2, 3]);
  });

  it('a damaged log header is damage at offset 0: the repair starts the log afresh', () => {
    const dir = tempDir();
    const { log, bytes } = threeFrames(dir);
    const damaged = Buffer.from(bytes);
    damaged[20] = (damaged[20] as number) ^ 0x01;
    writeFileSync(log, damaged);
    const err = refused(dir);
    expect(err.damages[0]).toMatchObject({ offset: 0, framesKept: 0, framesAfter: 3 });
    expect(err.message).toContain('bad header: header checksum mismatch');
    const { state } = repaired(dir);
    expect(state.records).toEqual([]);
    expect(readFileSync(state.repaired?.[0]?.keptAs as string).equals(damaged)).toBe(true);
  });

  it('a log of another format version is refused even with repair, and left alone', () => {
    const dir = tempDir();
    const { log, bytes } = threeFrames(dir);
    const other = Buffer.from(bytes);
    other.writeUInt32LE(2, 8);
    other.writeUInt32LE(crc32(other.subarray(0, 28)), 28);
    writeFileSync(log, other);
    for (const repair of [false, true]) {
      let err: unknown;
      try {
        openDurableStore(dir, { repair });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(DataDirCorruptError);
      expect(err).not.toBeInstanceOf(DataDirDamagedError);
      expect((err as Error).message).toMatch(/format version 2 is not supported/);
    }
    expect(readdirSync(dir)).toEqual(['log-0.jobd']);
    expect(readFileSync(log).equals(other)).toBe(true);
  });

  it('refuses a log that is not ours instead of discarding it', () => {
    const dir = tempDir();
    const { log } = threeFrames(dir);
    const damaged = readFileSync(log);
    damaged[0] = 0x58;
    writeFileSync(log, damaged);
    expect(() => openDurableStore(dir)).toThrow(DataDirCorruptError);
    expect(() => openDurableStore(dir)).toThrow(/bad magic/);
    // the failed open released the lock: a repaired directory opens
    writeFileSync(log, damaged.subarray(0, 0));
    expect(() => openDurableStore(dir)).toThrow(/shorter than its 32-byte header/);
  });

  it('refuses a log whose header generation disagrees with its name', () => {
    const dir = tempDir();
    const s = openDurableStore(dir);
    s.compact([]);
    s.close();
    // log-1 with a generation-0 header
    const other = tempDir();
    openDurableStore(other).close();
    writeFileSync(join(dir, 'log-1.jobd'), readFileSync(join(other, 'log-0.jobd')));
    expect(() => openDurableStore(dir)).toThrow(/header says generation 0, file name says 1/);
  });
});
