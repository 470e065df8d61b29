/**
 * Frames between the daemon and an isolated child (fd 3 both ways, see processes.ts): a UInt32BE
 * length, then the body: one tag byte and the message. FRAME_JSON: UTF-8 JSON text; FRAME_V8:
 * v8.serialize (structured clone). JSON is used only for a value JSON carries exactly as structured
 * clone would (jsonExact), so which form a message took never changes what arrives; the child then
 * needs no `node:v8`, whose loading pulls in Node's whole streams stack (~3.5 CPU-ms per isolated
 * job). Everything else goes as v8, as before.
 *
 * CommonJS, bundled into the child entry (scripts/bundleChild.mjs); `node:v8` is passed in by the
 * caller, so the child loads it only when a message needs it.
 */
import { isUtf8 } from 'node:buffer';
import { types } from 'node:util';

export const FRAME_V8 = 0;
export const FRAME_JSON = 1;

type V8 = Pick<typeof import('node:v8'), 'serialize' | 'deserialize'>;

/** Deeper values go as v8 (the walk is iterative, but JSON.parse/stringify recurse). */
const MAX_DEPTH = 64;
/**
 * Values with more parts (properties and elements) go as v8: in a fresh child the walk costs ~1.7
 * CPU-ms per 1,000 parts, and past this it would cost more than not loading `node:v8` saves.
 */
const MAX_PARTS = 1000;

/**
 * An upper bound of the value's size in v8's serialisation when JSON carries it exactly, else -1.
 * Exact means: strings, booleans, null, finite numbers other than -0, arrays (Array.prototype, dense,
 * no other own enumerable properties) and plain objects (Object.prototype or null prototype) whose own
 * enumerable string-keyed properties are all data properties, no undefined values, nothing reached
 * twice (structured clone keeps shared references and cycles, JSON would copy them), and no `toJSON`
 * on the prototypes JSON.stringify would ask.
 */
export function jsonExact(root: unknown): number {
  if ('toJSON' in Object.prototype || 'toJSON' in Array.prototype) return -1;
  const seen = new Set<object>();
  const stack: Array<{ v: unknown; depth: number }> = [{ v: root, depth: 0 }];
  // v8: 2 header bytes; per value a tag and at most a 5-byte varint or an 8-byte double.
  let bytes = 2;
  /** Values taken on so far (checked before an object's properties are listed). */
  let parts = 1;
  while (stack.length > 0) {
    const { v, depth } = stack.pop()!;
    switch (typeof v) {
      case 'string':
        // tag, varint length, a padding byte, two bytes per character at most
        bytes += 7 + 2 * v.length;
        continue;
      case 'boolean':
        bytes += 1;
        continue;
      case 'number':
        if (!Number.isFinite(v) || Object.is(v, -0)) return -1;
        bytes += 9;
        continue;
      case 'object':
        break;
      default:
        return -1; // undefined, bigint, symbol, function
    }
    if (v === null) {
      bytes += 1;
      continue;
    }
    if (depth >= MAX_DEPTH || seen.has(v)) return -1;
    // exotic objects structured clone refuses while JSON would not
    if (types.isProxy(v) || types.isArgumentsObject(v) || types.isModuleNamespaceObject(v)) return -1;
    seen.add(v);
    const proto = Object.getPrototypeOf(v) as unknown;
    const isArray = Array.isArray(v);
    if (isArray ? proto !== Array.prototype : proto !== Object.prototype && proto !== null) return -1;
    if (isArray && (v as unknown[]).length > MAX_PARTS - parts) return -1;
    const keys = Object.keys(v);
    if (isArray && keys.length !== (v as unknown[]).length) return -1; // holes or other properties
    parts += keys.length;
    if (parts > MAX_PARTS) return -1;
    const descs = Object.getOwnPropertyDescriptors(v) as Record<string, PropertyDescriptor>;
    // tag, count and end tag (arrays: length, end tag, two counts)
    bytes += 16;
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!;
      const d = descs[k]!;
      if (!('value' in d)) return -1; // an accessor: reading it twice could give two values
      if (isArray && k !== String(i)) return -1;
      if (!isArray) bytes += 7 + 2 * k.length;
      stack.push({ v: d.value, depth: depth + 1 });
    }
    if (bytes > 0x7fffffff) return -1;
  }
  return bytes;
}

/** The frame (length, tag, body) carrying `msg`; throws when v8 cannot serialise it. */
export function encodeFrame(msg: unknown, v8: () => V8): Buffer {
  if (jsonExact(msg) >= 0) {
    // One buffer, the text written in place: no copy of the body into a joined frame.
    const text = JSON.stringify(msg);
    const frame = Buffer.allocUnsafe(5 + Buffer.byteLength(text, 'utf8'));
    frame.write(text, 5, 'utf8');
    return head(frame, FRAME_JSON);
  }
  const body = v8().serialize(msg);
  const frame = Buffer.allocUnsafe(5 + body.length);
  body.copy(frame, 5);
  return head(frame, FRAME_V8);
}

/** Fills in a frame's length (UInt32BE of the body with its tag) and tag. */
function head(frame: Buffer, tag: number): Buffer {
  const n = frame.length - 4;
  if (n > 0xffffffff) throw new RangeError(`a frame of ${n} bytes does not fit its 4-byte length`);
  frame[0] = n >>> 24;
  frame[1] = (n >>> 16) & 0xff;
  frame[2] = (n >>> 8) & 0xff;
  frame[3] = n & 0xff;
  frame[4] = tag;
  return frame;
}

/** The message a frame's body (tag and message) carries; throws when it is malformed. */
export function decodeBody(body: Buffer, v8: () => V8): unknown {
  if (body.length < 2) throw new Error('empty frame');
  const rest = body.subarray(1);
  if (body[0] === FRAME_JSON) {
    if (!isUtf8(rest)) throw new Error('frame is not UTF-8');
    return JSON.parse(rest.toString('utf8'));
  }
  if (body[0] === FRAME_V8) return v8().deserialize(rest);
  throw new Error(`unknown frame tag ${body[0]}`);
}
