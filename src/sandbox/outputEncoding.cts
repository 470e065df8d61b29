/**
 * Child side: turn what a handler returned into the bytes sent to the daemon (v8.serialize, the
 * structured clone format), or say precisely why it cannot go.
 *
 * Structured clone would not fail on everything it cannot carry: it silently turns a class instance
 * (a URL, an ObjectId, an Error) into a plain object without its prototype and private state. So
 * the value is walked first and everything but plain data is refused, naming where it sits; the walk
 * also adds up a lower bound of the encoded size, so a huge output is refused before the child
 * spends memory encoding it. CommonJS, loaded with require() by childEntry.cts: no ESM loader.
 */
import { types } from 'node:util';
import { jsonExact } from './frames.cjs';

/**
 * ok: `bytes` (v8) or `json` (JSON text, only when asked for); neither when the value is undefined
 * and JSON was asked for (it then arrives as undefined, as v8 would carry it).
 */
export type Encoded =
  | { ok: true; bytes?: Uint8Array; json?: string }
  | { ok: false; tooLarge: boolean; reason: string };

interface Frame {
  parent: Frame | null;
  /** How this value is reached from its parent: `.key`, `[3]`, `.get("k")`, ... */
  step: string;
}

function pathOf(f: Frame | null): string {
  const steps: string[] = [];
  for (let p = f; p; p = p.parent) steps.push(p.step);
  return 'output' + steps.reverse().join('');
}

function keyStep(key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

function shortKey(k: unknown): string {
  if (typeof k === 'string') return JSON.stringify(k.length > 40 ? `${k.slice(0, 40)}...` : k);
  if (typeof k === 'object' && k !== null) return 'an object key';
  return String(k);
}

/** Prototypes whose instances structured clone carries as they are. */
const LEAF_PROTOS = new Set<unknown>([Date.prototype, RegExp.prototype, ArrayBuffer.prototype]);

function describe(v: object): string {
  if (v instanceof Promise) return 'a Promise (return the value it resolves to)';
  if (v instanceof Error) return `an Error (${v.name}); return plain data such as { message, code }`;
  const ctor = (v as { constructor?: { name?: unknown } }).constructor;
  const name = typeof ctor?.name === 'string' && ctor.name ? ctor.name : 'an unknown class';
  return `an instance of ${name}, which would arrive as a plain object without its prototype and private state`;
}

export function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

function tooLarge(bytes: number, maxBytes: number, atLeast: boolean): Encoded {
  return {
    ok: false,
    tooLarge: true,
    reason:
      `handler output is too large: its encoding is ${atLeast ? 'at least ' : ''}${mib(bytes)} (${bytes} bytes), ` +
      `over the limit of ${mib(maxBytes)} (${maxBytes} bytes); a job's result is stored in one MongoDB document ` +
      '(16 MiB at most): write large data to files and return their paths',
  };
}

/** Null when `root` is plain data; else where and what the first problem is. Also a size lower bound. */
function inspect(root: unknown, maxBytes: number): { problem: string | null; bytes: number } {
  const seen = new Set<object>();
  const stack: Array<{ v: object; f: Frame | null }> = [];
  let bytes = 0;
  let problem: string | null = null;

  /** Checks a value reached through `step` from `parent`; objects are queued. False stops the walk. */
  const visit = (v: unknown, parent: Frame | null, step: string | null): boolean => {
    const here = (): Frame | null => (step === null ? parent : { parent, step });
    switch (typeof v) {
      case 'string':
        bytes += v.length + 1;
        return true;
      case 'function':
        problem = `${pathOf(here())} is a function`;
        return false;
      case 'symbol':
        problem = `${pathOf(here())} is a symbol`;
        return false;
      case 'object':
        if (v === null) break;
        if (!seen.has(v)) {
          seen.add(v);
          stack.push({ v, f: here() });
        }
        break;
      default:
        break;
    }
    bytes += 1;
    return true;
  };

  if (!visit(root, null, null)) return { problem, bytes };
  while (stack.length) {
    if (bytes > maxBytes) return { problem: null, bytes };
    const { v, f } = stack.pop()!;
    if (types.isProxy(v)) return { problem: `${pathOf(f)} is a Proxy`, bytes };
    const proto = Object.getPrototypeOf(v) as unknown;
    if (Array.isArray(v) && proto === Array.prototype) {
      for (let i = 0; i < v.length; i++) if (i in v && !visit(v[i], f, `[${i}]`)) return { problem, bytes };
    } else if (proto === Object.prototype || proto === null) {
      for (const k of Object.keys(v)) {
        bytes += k.length;
        if (!visit((v as Record<string, unknown>)[k], f, keyStep(k))) return { problem, bytes };
      }
    } else if (proto === Map.prototype) {
      for (const [k, val] of v as Map<unknown, unknown>) {
        if (!visit(k, f, ` (a Map key)`) || !visit(val, f, `.get(${shortKey(k)})`)) return { problem, bytes };
      }
    } else if (proto === Set.prototype) {
      for (const el of v as Set<unknown>) if (!visit(el, f, ' (a Set element)')) return { problem, bytes };
    } else if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) {
      // Typed arrays, DataView, Buffer (it arrives as a Uint8Array), ArrayBuffer.
      bytes += v.byteLength;
    } else if (!LEAF_PROTOS.has(proto)) {
      return { problem: `${pathOf(f)} is ${describe(v)}`, bytes };
    }
  }
  return { problem: null, bytes };
}

/**
 * Encode `value` for the daemon, refusing what would not arrive unchanged or exceeds `maxBytes`.
 * `json`: plain data JSON carries exactly (frames.cts) goes as JSON text, without loading `node:v8`,
 * when even an upper bound of its v8 size is within `maxBytes` (so what is accepted does not change).
 */
export function encodeOutput(value: unknown, maxBytes: number, json = false): Encoded {
  if (json) {
    if (value === undefined) return { ok: true };
    try {
      const bound = jsonExact(value);
      if (bound >= 0 && bound <= maxBytes) return { ok: true, json: JSON.stringify(value) };
    } catch {
      // a throwing trap or getter: the walk below says what it was
    }
  }
  let seen: { problem: string | null; bytes: number };
  try {
    seen = inspect(value, maxBytes);
  } catch (err) {
    // A getter that throws, a revoked proxy...
    return { ok: false, tooLarge: false, reason: `reading it threw: ${errText(err)}` };
  }
  if (seen.problem) return { ok: false, tooLarge: false, reason: seen.problem };
  if (seen.bytes > maxBytes) return tooLarge(seen.bytes, maxBytes, true);
  let bytes: Buffer;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded only when needed (frames.cts)
    bytes = (require('node:v8') as typeof import('node:v8')).serialize(value);
  } catch (err) {
    return { ok: false, tooLarge: false, reason: `structured clone failed: ${errText(err)}` };
  }
  if (bytes.length > maxBytes) return tooLarge(bytes.length, maxBytes, false);
  return { ok: true, bytes };
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
