/** The sandbox's pure parts: marker splitting, the bounded tail, progress coalescing, frames, its errors. */
import { deserialize, serialize } from 'node:v8';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  ChildCrashError,
  DoNotRetryError,
  HandlerLoadError,
  HandlerNeverSettledError,
  JobAbortedError,
  JobTimeoutError,
  MemoryLimitError,
  OutputTooLargeError,
  UnserializableOutputError,
  UnserializableParamsError,
  isDoNotRetry,
  serializeError,
} from '../../src/errors.js';
import { MarkerSplitter, TailRing, decodeTail } from '../../src/sandbox/jobLog.js';
import { FRAME_JSON, FRAME_V8, encodeFrame } from '../../src/sandbox/frames.cjs';
import { FrameReader } from '../../src/sandbox/processes.js';
import { ProgressCoalescer } from '../../src/sandbox/progress.js';
import { endOfJobMarker, type ChildMessage } from '../../src/sandbox/protocol.js';

const marker = Buffer.from(endOfJobMarker('nonce-1'));

function split(chunks: Buffer[]): { segments: string[]; markers: number; flushed: string } {
  const segments: string[] = [''];
  let markers = 0;
  const s = new MarkerSplitter(marker);
  const emit = (b: Buffer): void => {
    segments[segments.length - 1] += b.toString();
  };
  for (const c of chunks) {
    s.push(c, emit, () => {
      markers++;
      segments.push('');
    });
  }
  let flushed = '';
  s.flush((b) => (flushed += b.toString()));
  return { segments, markers, flushed };
}

describe('MarkerSplitter', () => {
  it('splits output at the marker', () => {
    const r = split([Buffer.concat([Buffer.from('job one\n'), marker, Buffer.from('stray')])]);
    expect(r).toEqual({ segments: ['job one\n', 'stray'], markers: 1, flushed: '' });
  });

  it('finds a marker split across reads at every possible position', () => {
    const whole = Buffer.concat([Buffer.from('abc'), marker, Buffer.from('def')]);
    for (let cut = 0; cut <= whole.length; cut++) {
      const r = split([whole.subarray(0, cut), whole.subarray(cut)]);
      expect(r.markers).toBe(1);
      expect(r.segments).toEqual(['abc', 'def']);
    }
  });

  it('passes through NUL bytes and marker look-alikes, holding back only a possible prefix', () => {
    const fake = Buffer.from('\u0000jobd-end-of-job:other-nonce\u0000');
    const r = split([Buffer.concat([fake, Buffer.from('x')]), marker.subarray(0, 5)]);
    expect(r.markers).toBe(0);
    expect(r.segments).toEqual([fake.toString() + 'x']);
    expect(r.flushed).toBe(marker.subarray(0, 5).toString());
  });
});

describe('TailRing', () => {
  it('keeps only the last bytes', () => {
    const t = new TailRing(10);
    for (let i = 0; i < 100; i++) t.push(Buffer.from(`line ${i}\n`));
    expect(t.text()).toBe('e 98\nline 99\n'.slice(-10));
  });

  it('handles chunks larger than the ring and a zero-size ring', () => {
    const t = new TailRing(4);
    t.push(Buffer.from('0123456789'));
    expect(t.text()).toBe('6789');
    const z = new TailRing(0);
    z.push(Buffer.from('abc'));
    expect(z.text()).toBe('');
  });

  it('never starts inside a UTF-8 character', () => {
    expect(decodeTail(Buffer.from('é', 'utf8').subarray(1))).toBe('');
    const t = new TailRing(3);
    t.push(Buffer.from('aéé', 'utf8')); // 5 bytes: a, c3 a9, c3 a9
    expect(t.text()).toBe('é');
  });
});

describe('ProgressCoalescer', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('emits the first value at once, then at most one per interval, last value wins, final value flushed', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const calls: Array<[number, string | undefined]> = [];
    const c = new ProgressCoalescer(1000, (p, m) => calls.push([p, m]));
    c.push(1, 'a');
    expect(calls).toEqual([[1, 'a']]);
    for (let i = 2; i <= 50; i++) c.push(i, `m${i}`);
    expect(calls).toHaveLength(1);
    vi.advanceTimersByTime(1000);
    expect(calls).toEqual([
      [1, 'a'],
      [50, 'm50'],
    ]);
    c.push(60);
    c.push(70, 'late');
    expect(calls).toHaveLength(2);
    c.close();
    expect(calls.at(-1)).toEqual([70, 'late']);
    c.push(80);
    vi.advanceTimersByTime(5000);
    expect(calls).toHaveLength(3);
  });

  it('close() with nothing pending emits nothing', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const calls: number[] = [];
    const c = new ProgressCoalescer(1000, (p) => calls.push(p));
    c.push(5);
    c.close();
    expect(calls).toEqual([5]);
  });
});

describe('FrameReader', () => {
  const frame = (m: ChildMessage): Buffer => encodeFrame(m, () => ({ serialize, deserialize }));
  const a: ChildMessage = { t: 'progress', percent: 5, message: 'a' };
  const b: ChildMessage = { t: 'progress', percent: 6 };
  // (a v8 frame: JSON would lose the -0)
  const c: ChildMessage = { t: 'progress', percent: -0 };

  it('reads frames however the bytes are cut', () => {
    const whole = Buffer.concat([frame(a), frame(c), frame(b)]);
    for (let cut = 0; cut <= whole.length; cut++) {
      const got: ChildMessage[] = [];
      const r = new FrameReader((m) => got.push(m));
      r.push(whole.subarray(0, cut));
      r.push(whole.subarray(cut));
      expect(got).toStrictEqual([a, c, b]);
    }
  });

  it.each([
    ['JSON', 'y'],
    ['v8', '\u{1F600}'], // a two-byte string in v8; the Date below makes it a v8 frame
  ])('assembles a %s frame of many megabytes from small reads', (form, ch) => {
    const message = ch.repeat(8 * 1024 * 1024);
    const big = { t: 'progress', percent: 1, message, ...(form === 'v8' ? { at: new Date(1) } : {}) };
    const bytes = frame(big as ChildMessage);
    expect(bytes[4]).toBe(form === 'v8' ? FRAME_V8 : FRAME_JSON);
    const got: ChildMessage[] = [];
    const r = new FrameReader((m) => got.push(m));
    for (let i = 0; i < bytes.length; i += 65536) r.push(bytes.subarray(i, i + 65536));
    expect(got).toHaveLength(1);
    expect((got[0] as { message: string }).message).toBe(message);
  });
});

describe("the sandbox's errors", () => {
  it('each has a stable name and code, also as a plain object', () => {
    const cases: Array<[Error, string, string]> = [
      [new JobAbortedError('x'), 'JobAbortedError', 'JOBD_ABORTED'],
      [new ChildCrashError('x'), 'ChildCrashError', 'JOBD_CHILD_CRASH'],
      [new MemoryLimitError(1024, 2048), 'MemoryLimitError', 'JOBD_MEMORY_LIMIT'],
      [new UnserializableParamsError('x'), 'UnserializableParamsError', 'JOBD_UNSERIALIZABLE_PARAMS'],
      [new UnserializableOutputError('x'), 'UnserializableOutputError', 'JOBD_UNSERIALIZABLE_OUTPUT'],
      [new OutputTooLargeError('x'), 'OutputTooLargeError', 'JOBD_OUTPUT_TOO_LARGE'],
      [new HandlerLoadError('x'), 'HandlerLoadError', 'JOBD_HANDLER_LOAD'],
      [new HandlerNeverSettledError(), 'HandlerNeverSettledError', 'JOBD_HANDLER_NEVER_SETTLED'],
      [new JobTimeoutError(5), 'JobTimeoutError', 'JOBD_TIMEOUT'],
    ];
    for (const [err, name, code] of cases) {
      expect(err).toBeInstanceOf(Error);
      expect(serializeError(err)).toMatchObject({ name, code });
    }
    expect(new MemoryLimitError(1024, 2048).message).toContain(
      'limit of 0.0 MiB (1024 bytes): child RSS was 0.0 MiB (2048 bytes)',
    );
  });

  it('a module that cannot be loaded and an output that cannot leave the child are not retried, like DoNotRetryError; the others are', () => {
    for (const e of [
      new HandlerLoadError('x'),
      new DoNotRetryError('x'),
      new UnserializableOutputError('x'),
      new OutputTooLargeError('x'),
    ])
      expect(isDoNotRetry(serializeError(e))).toBe(true);
    expect(isDoNotRetry({ name: 'HandlerLoadError', code: 'JOBD_HANDLER_LOAD', message: 'x' })).toBe(true);
    for (const e of [
      new HandlerNeverSettledError(),
      new ChildCrashError('x'),
      new UnserializableParamsError('x'),
    ])
      expect(isDoNotRetry(serializeError(e))).toBe(false);
  });
});
