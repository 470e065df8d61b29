import { describe, expect, it } from 'vitest';
import { appendFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HEADER_BYTES } from '../../src/embedded/persistenceFrames.js';
import { currentLogPath, DataDirCorruptError, openDurableStore } from '../../src/embedded/persistence.js';
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

describe('durable store: torn and corrupt tails', () => {
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
        expect(messages.join('\n')).toMatch(/dropped a torn or corrupt tail of \d+ bytes/);
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

  it('a frame whose checksum fails ends the log there: it and everything after it are dropped', () => {
    const dir = tempDir();
    const { log, bytes, ends } = threeFrames(dir);
    const [end1, end2] = ends as [number, number, number];
    const damaged = Buffer.from(bytes);
    const at = end1 + Math.floor((end2 - end1) / 2);
    damaged[at] = (damaged[at] as number) ^ 0xff;
    writeFileSync(log, damaged);
    const s = openDurableStore(dir);
    const state = s.load();
    s.close();
    expect(ids(state.records)).toEqual([1]);
    expect(state.tornTail?.reason).toMatch(/checksum mismatch/);
    expect(statSync(log).size).toBe(end1);
  });

  it('a damaged length field is caught too', () => {
    const dir = tempDir();
    const { log, bytes, ends } = threeFrames(dir);
    const damaged = Buffer.from(bytes);
    damaged.writeUInt32LE(3, ends[1] as number); // the third frame now claims 3 bytes
    writeFileSync(log, damaged);
    const s = openDurableStore(dir);
    expect(ids(s.load().records)).toEqual([1, 2, 3]);
    s.close();
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
