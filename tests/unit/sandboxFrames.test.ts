/**
 * The frames of isolated children (src/sandbox/frames.cts): plain messages go as JSON, everything
 * else as v8, and either way a value arrives exactly as v8's structured clone delivers it. The
 * round trips go through real isolated children of the compiled sandbox (dist/), where a plain job's
 * child never loads `node:v8`. Needs `npm run build`.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deserialize, serialize } from 'node:v8';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FRAME_JSON, FRAME_V8, decodeBody, encodeFrame, jsonExact } from '../../src/sandbox/frames.cjs';
import { FrameReader } from '../../src/sandbox/processes.js';
import type { ChildMessage } from '../../src/sandbox/protocol.js';
import { completed, noHooks, request, useCompiledSandboxes, useSandboxes } from './sandboxHelpers.js';

const v8 = () => ({ serialize, deserialize });
const clone = <T>(v: T): T => deserialize(serialize(v)) as T;

/**
 * A description of a value down to what structured clone keeps: prototypes, -0, undefined keys,
 * bytes, Map and Set contents, shared references. Also written into the handler modules below.
 */
function describeValue(root: unknown): string {
  const ids = new Map<object, number>();
  const d = (v: unknown): string => {
    if (v === undefined) return 'undefined';
    if (typeof v === 'number') return Object.is(v, -0) ? '-0' : String(v);
    if (typeof v === 'bigint') return `${v}n`;
    if (typeof v !== 'object' || v === null) return JSON.stringify(v);
    const seen = ids.get(v);
    if (seen !== undefined) return `#${seen}`;
    ids.set(v, ids.size);
    const proto = Object.getPrototypeOf(v) as { constructor?: { name?: string } } | null;
    const tag = `${Object.prototype.toString.call(v)}<${proto === null ? 'null' : (proto.constructor?.name ?? '?')}>`;
    if (v instanceof Map) return `${tag}{${[...v].map(([k, x]) => `${d(k)}=>${d(x)}`).join(',')}}`;
    if (v instanceof Set) return `${tag}{${[...v].map(d).join(',')}}`;
    if (ArrayBuffer.isView(v))
      return `${tag}[${[...new Uint8Array(v.buffer, v.byteOffset, v.byteLength)].join(',')}]`;
    if (v instanceof Date) return `${tag}${v.getTime()}`;
    if (v instanceof RegExp) return `${tag}${String(v)}`;
    if (v instanceof Error) return `${tag}${v.name}:${v.message}`;
    const rec = v as Record<string, unknown>;
    const len = Array.isArray(v) ? `len${v.length}` : '';
    return `${tag}${len}{${Object.keys(v)
      .map((k) => `${JSON.stringify(k)}:${d(rec[k])}`)
      .join(',')}}`;
  };
  return d(root);
}

describe('frames', () => {
  const body = (frame: Buffer): Buffer => frame.subarray(4, 4 + frame.readUInt32BE(0));

  it('frames plain data as JSON and everything else as v8', () => {
    const plain = [
      null,
      true,
      'x\u{1F600}\ud800',
      0,
      1.5e300,
      [1, [2]],
      { a: { b: [] } },
      Object.create(null),
    ];
    for (const v of plain) expect([v, body(encodeFrame(v, v8))[0]]).toEqual([v, FRAME_JSON]);
    const shared = {};
    const holes = [1, , 3]; // eslint-disable-line no-sparse-arrays
    const extra = Object.assign([1], { x: 1 });
    const accessor = Object.defineProperty({}, 'g', { get: () => 1, enumerable: true });
    class Point {
      x = 1;
    }
    let deep: unknown = 1;
    for (let i = 0; i < 100; i++) deep = [deep];
    const others = [
      undefined,
      { u: undefined },
      Number.NaN,
      Infinity,
      -0,
      [-0],
      10n,
      new Date(0),
      Buffer.from('a'),
      new Uint8Array(1),
      new Map(),
      new Set(),
      /x/,
      new Error('e'),
      new Point(),
      { a: shared, b: shared },
      holes,
      extra,
      accessor,
      deep,
      new Array(1001).fill(0), // more parts than the walk takes on
      Array.from({ length: 200 }, () => ({ a: 1, b: 2, c: 3, d: 4 })),
    ];
    for (const v of others) {
      expect(jsonExact(v)).toBe(-1);
      expect(body(encodeFrame(v, v8))[0]).toBe(FRAME_V8);
    }
    // JSON would carry a Proxy of plain data; structured clone refuses it, and so does the frame.
    const proxy = new Proxy({ a: 1 }, {});
    expect(jsonExact(proxy)).toBe(-1);
    expect(() => encodeFrame(proxy, v8)).toThrow(/could not be cloned/);
  });

  it('decodes each frame to what v8 would deliver', () => {
    const values = [
      { a: [1, 'b', null, { c: false }] },
      { d: new Date(5), z: -0, u: undefined, m: new Map([[1, 2]]) },
    ];
    for (const v of values) expect(decodeBody(body(encodeFrame(v, v8)), v8)).toStrictEqual(clone(v));
  });

  it('an upper bound of the v8 size', () => {
    const values = [null, 'abc', '\u{1F600}'.repeat(50), { a: [1, 2.5, 'x'.repeat(1000)], 'k\u00e9y': true }];
    for (const v of values) expect(jsonExact(v)).toBeGreaterThanOrEqual(serialize(v).length);
  });

  it('a malformed frame is an error, never a value', () => {
    const bad = [
      Buffer.alloc(0),
      Buffer.from([FRAME_JSON]),
      Buffer.from([FRAME_JSON, 0x7b]), // '{'
      Buffer.concat([Buffer.from([FRAME_JSON]), Buffer.from('"\xff"', 'latin1')]), // not UTF-8
      Buffer.from([FRAME_V8, 1, 2, 3]),
      Buffer.from([7, 0x6e, 0x75, 0x6c, 0x6c]), // unknown tag, 'null'
    ];
    for (const b of bad) expect(() => decodeBody(b, v8)).toThrow();
    // The daemon's reader drops such frames and delivers the next good one.
    const got: ChildMessage[] = [];
    const reader = new FrameReader((m) => got.push(m));
    const frame = (b: Buffer): Buffer => {
      const head = Buffer.alloc(4);
      head.writeUInt32BE(b.length);
      return Buffer.concat([head, b]);
    };
    const good = encodeFrame({ t: 'progress', percent: 5 }, v8);
    const all = Buffer.concat([...bad.map(frame), good]);
    for (let i = 0; i < all.length; i += 3) reader.push(all.subarray(i, i + 3));
    expect(got).toEqual([{ t: 'progress', percent: 5 }]);
  });
});

describe('through an isolated child of the compiled sandbox', () => {
  useSandboxes();
  let mods: string;
  const sandbox = useCompiledSandboxes();

  beforeAll(() => {
    mods = mkdtempSync(join(tmpdir(), 'jobd-frames-'));
  });
  afterAll(() => rmSync(mods, { recursive: true, force: true }));

  function write(name: string, body: string): string {
    const file = join(mods, name);
    writeFileSync(file, `const describeValue = ${describeValue.toString()};\nmodule.exports = ${body};\n`);
    return file;
  }
  const loadedV8 = "process.moduleLoadList.includes('NativeModule v8')";

  it("a plain job's child never loads node:v8; one whose params need v8 does", async () => {
    const file = write('plain.cjs', `(p) => ({ v8: ${loadedV8}, p })`);
    const s = sandbox();
    const plain = { name: 'run-7', n: [1, 2.5, -3], nested: { ok: true, none: null } };
    const o = completed(await s.run(request(file, { mode: 'isolated', params: plain }), noHooks));
    expect(o.output).toStrictEqual({ v8: false, p: plain });
    // as the daemon asks (worker/executor.ts runRequestFor): hooks, family, env; progress on the way
    const daemonLike = completed(
      await s.run(
        request(file, {
          mode: 'isolated',
          params: plain,
          hooks: {
            timeoutMs: 5000,
            maxAttempts: 3,
            retry: { baseMs: 1000, factor: 2, capMs: 60_000, jitter: 1 },
            random: 0.25,
          },
          family: { resumes: 0, dependencies: { a: { rows: 3 } } },
          env: { JOBD_TEST_FRAMES: '1' },
        }),
        noHooks,
      ),
    );
    expect(daemonLike.output).toStrictEqual({ v8: false, p: plain });
    const nulls = write('null.cjs', `() => (${loadedV8} ? 'loaded' : null)`);
    expect(
      completed(await s.run(request(nulls, { mode: 'isolated', params: {} }), noHooks)).output,
    ).toBeNull();
    const dated = completed(
      await s.run(request(file, { mode: 'isolated', params: { at: new Date(7) } }), noHooks),
    );
    expect(dated.output).toStrictEqual({ v8: true, p: { at: new Date(7) } });
  });

  const shared = { s: 1 };
  const cyclic: Record<string, unknown> = { name: 'loop' };
  cyclic.self = cyclic;
  const both: Array<[string, unknown]> = [
    [
      'plain data',
      { s: 'caf\u00e9 \u{1F600} \ud800', n: [0, -1, 2 ** 53, 1e-300], o: { t: true, f: false, z: null } },
    ],
    ['a null-prototype object', Object.assign(Object.create(null) as object, { a: 1 })],
    ['a __proto__ key', JSON.parse('{"__proto__": {"x": 1}, "k": 2}') as unknown],
    ['a Date', { at: new Date(1_700_000_000_123) }],
    ['-0', { z: -0, list: [0, -0] }],
    ['NaN and Infinity', [Number.NaN, Infinity, -Infinity]],
    ['undefined values', { u: undefined, list: [undefined, 1] }],
    ['a hole', [1, , 3]], // eslint-disable-line no-sparse-arrays
    [
      'Buffers and typed arrays',
      { b: Buffer.from('bytes'), f: new Float64Array([1.5, -0]), u: new Uint8Array([1, 2]) },
    ],
    [
      'nested Maps and a Set',
      new Map<unknown, unknown>([
        ['m', new Map([[1, new Set(['x', 2])]])],
        [3, { k: 'v' }],
      ]),
    ],
    ['a BigInt', { big: 12345678901234567890n }],
    ['a RegExp', { re: /a+b/gi }],
    ['a shared object', { a: shared, b: shared }],
    ['a cycle', cyclic],
    ['deep nesting', JSON.parse(`${'['.repeat(80)}1${']'.repeat(80)}`) as unknown],
    ['a string', 'just a string'],
    ['null', null],
  ];

  it.each(both)('params and result with %s arrive as v8 delivers them', async (_, value) => {
    const file = write('echo.cjs', '(p) => ({ seen: describeValue(p), back: p })');
    const o = completed(await sandbox().run(request(file, { mode: 'isolated', params: value }), noHooks));
    const out = o.output as { seen: string; back: unknown };
    // as the handler saw its params, and as the result came back
    expect(out.seen).toBe(describeValue(clone(value)));
    expect(describeValue(out.back)).toBe(describeValue(clone(clone(value))));
    expect(out.back).toStrictEqual(clone(clone(value)));
  });

  class Point {
    constructor(public x = 1) {}
  }
  const err = Object.assign(new RangeError('out of range'), { code: 'E_RANGE' });
  it.each([
    ['a class instance', { p: new Point(3) }],
    ['an Error', { e: err }],
    ['an accessor', Object.defineProperty({ a: 1 }, 'g', { get: () => 2, enumerable: true })],
    ['an array with a property', Object.assign([1, 2], { extra: 'x' })],
  ] as Array<[string, unknown]>)('params with %s arrive as v8 delivers them', async (_, value) => {
    const file = write('describe.cjs', '(p) => describeValue(p)');
    const o = completed(await sandbox().run(request(file, { mode: 'isolated', params: value }), noHooks));
    expect(o.output).toBe(describeValue(clone(value)));
  });

  it('a result of undefined arrives as undefined', async () => {
    const file = write('undef.cjs', '() => undefined');
    const o = completed(await sandbox().run(request(file, { mode: 'isolated', params: {} }), noHooks));
    expect(o).toHaveProperty('output', undefined);
  });
});
