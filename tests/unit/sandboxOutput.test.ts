/**
 * What a handler returns reaches the daemon exactly, or the attempt fails with a clear error; the
 * child and its channel survive either way. Both modes, real child processes.
 */
import { describe, expect, it } from 'vitest';
import { completed, failed, noHooks, request, sandbox, useSandboxes } from './sandboxHelpers.js';

useSandboxes();

const modes = ['pooled', 'isolated'] as const;

describe.each(modes)('output across the process boundary (%s)', (mode) => {
  it('arrives exactly as returned: BigInt, circular and shared references, Map, Set, Date, typed arrays, holes, -0', async () => {
    const o = completed(
      await sandbox().run(request('returns.ts', { mode, params: { kind: 'rich' } }), noHooks),
    );
    const out = o.output as Record<string, unknown>;
    expect(out.huge).toBe(2n ** 80n + 7n);
    expect(out.negative).toBe(-(2n ** 70n));
    expect(out.self).toBe(out);
    expect(out.left).toBe(out.right);
    const map = out.map as Map<unknown, unknown>;
    expect(map).toBeInstanceOf(Map);
    expect(map.get('a')).toBe(1);
    expect((map.get(2) as { b: unknown[] }).b[0]).toBe(out.left);
    expect(out.set).toEqual(new Set(['x', 3]));
    expect(out.when).toEqual(new Date(Date.UTC(2020, 1, 29, 12)));
    expect(out.pattern).toEqual(/jo+bd/gi);
    expect(out.bytes).toEqual(new Uint8Array([1, 2, 255]));
    expect(out.bytes).toBeInstanceOf(Uint8Array);
    expect(out.floats).toBeInstanceOf(Float64Array);
    expect(Buffer.isBuffer(out.buffer)).toBe(true);
    expect((out.buffer as Buffer).toString()).toBe('buf');
    expect('nothing' in out && out.nothing === undefined).toBe(true);
    expect(out.nil).toBeNull();
    const holes = out.holes as unknown[];
    expect(holes).toHaveLength(3);
    expect(1 in holes).toBe(false);
    expect(Object.is(out.minusZero, -0)).toBe(true);
    expect(out.nan).toBeNaN();
    expect(out.inf).toBe(-Infinity);
    expect(out.text).toBe('é ✓ \u0000 end');
    expect({ ...(out.nullProto as object) }).toEqual({ k: 'v' });
  });

  it('undefined output arrives as undefined', async () => {
    const o = completed(
      await sandbox().run(request('returns.ts', { mode, params: { kind: 'undefined' } }), noHooks),
    );
    expect(o.output).toBeUndefined();
  });

  it('refuses what would not arrive unchanged, naming where it is', async () => {
    const s = sandbox();
    const cases: Array<[string, string]> = [
      ['function', 'output.list[1].callback is a function'],
      ['symbol', 'output.tag is a symbol'],
      ['url', 'output.link is an instance of URL'],
      ['class', 'output.items.get("s") is an instance of Secret'],
      ['error', 'output.problem is an Error (TypeError)'],
      ['promise', 'output.later is a Promise'],
      ['getterThrows', 'getter exploded'],
    ];
    for (const [kind, says] of cases) {
      const o = failed(await s.run(request('returns.ts', { mode, params: { kind } }), noHooks));
      expect(o.reason).toBe('error');
      expect(o.error).toMatchObject({
        name: 'UnserializableOutputError',
        code: 'JOBD_UNSERIALIZABLE_OUTPUT',
      });
      expect(o.error.message).toContain(says);
    }
  });

  it('refuses an output over maxOutputBytes before sending it, and one just under it goes through', async () => {
    const s = sandbox({ maxOutputBytes: 8 * 1024 * 1024 });
    const big = failed(
      await s.run(request('returns.ts', { mode, params: { kind: 'megabytes', mb: 9 } }), noHooks),
    );
    expect(big).toMatchObject({
      reason: 'error',
      error: { name: 'OutputTooLargeError', code: 'JOBD_OUTPUT_TOO_LARGE' },
    });
    expect(big.error.message).toContain('its encoding is at least 9.0 MiB');
    expect(big.error.message).toContain('over the limit of 8.0 MiB (8388608 bytes)');
    // 4.5 Mi characters, 9 MiB encoded: only the encoding itself shows it is too large.
    const wide = failed(
      await s.run(
        request('returns.ts', { mode, params: { kind: 'wide', chars: 4.5 * 1024 * 1024 } }),
        noHooks,
      ),
    );
    expect(wide.error).toMatchObject({ code: 'JOBD_OUTPUT_TOO_LARGE' });
    expect(wide.error.message).toMatch(/its encoding is 9\.0 MiB \(\d+ bytes\), over the limit of 8\.0 MiB/);
    const fits = completed(
      await s.run(request('returns.ts', { mode, params: { kind: 'megabytes', mb: 7 } }), noHooks),
    );
    expect((fits.output as { blob: string }).blob).toHaveLength(7 * 1024 * 1024);
  });

  it('carries tens of megabytes', async () => {
    const o = completed(
      await sandbox().run(request('returns.ts', { mode, params: { kind: 'megabytes', mb: 40 } }), noHooks),
    );
    expect((o.output as { blob: string }).blob).toHaveLength(40 * 1024 * 1024);
  });
});

it('a pooled child keeps serving after refused outputs', async () => {
  const s = sandbox();
  const first = completed(await s.run(request('returns.ts', { params: { kind: 'pid' } }), noHooks));
  failed(await s.run(request('returns.ts', { params: { kind: 'url' } }), noHooks));
  failed(await s.run(request('returns.ts', { params: { kind: 'function' } }), noHooks));
  const last = completed(await s.run(request('returns.ts', { params: { kind: 'pid' } }), noHooks));
  expect((last.output as { pid: number }).pid).toBe((first.output as { pid: number }).pid);
  expect(s.stats()).toEqual({ children: 1, idle: 1, busy: 0 });
});
