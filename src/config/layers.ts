/**
 * The layering of settings: the settings file, then JOBD_* environment and command-line flags (env.ts),
 * then the library's overrides, merged key by key; each value remembers where it came from, for messages.
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import { dotted } from './validate.js';

export type Json = Record<string, unknown>;

export function isPlainObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export function setPath(target: Json, path: readonly string[], value: unknown): void {
  let cur = target;
  for (const p of path.slice(0, -1)) {
    if (!isPlainObject(cur[p])) cur[p] = {};
    cur = cur[p] as Json;
  }
  cur[path[path.length - 1]!] = value;
}

export function getPath(root: unknown, path: readonly string[]): unknown {
  let cur = root;
  for (const p of path) {
    if (!isPlainObject(cur)) return undefined;
    cur = cur[p];
  }
  return cur;
}

export function deepMerge(base: Json, over: Json): Json {
  const out: Json = { ...base };
  for (const [k, v] of Object.entries(over)) {
    out[k] = isPlainObject(v) && isPlainObject(out[k]) ? deepMerge(out[k] as Json, v) : v;
  }
  return out;
}

export function readSettingsFile(file: string): Json {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a folder' : (err as Error).message;
    throw new ConfigError(`settings: cannot read settings file ${file}: ${why}`, { cause: err });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`settings: ${file} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!isPlainObject(data)) {
    throw new ConfigError(
      `settings: ${file} must hold a JSON object ({ ... }), found ${Array.isArray(data) ? 'an array' : typeof data}`,
    );
  }
  return data;
}

export interface Layers {
  merged: Json;
  /** dotted path → "from JOBD_X" / "from --flag" (values from the file have the file's label). */
  origins: Map<string, string>;
  /** dotted paths set by env or flags: relative paths there resolve against the cwd. */
  cwdRelative: Set<string>;
  fileLabel?: string;
}

export function overridesLayer(overrides: Json, layers: Layers): void {
  const mark = (value: unknown, path: string[]): void => {
    if (isPlainObject(value)) {
      for (const [k, v] of Object.entries(value)) mark(v, [...path, k]);
      return;
    }
    layers.origins.set(dotted(path), 'from overrides');
    layers.cwdRelative.add(dotted(path));
  };
  mark(overrides, []);
  layers.merged = deepMerge(layers.merged, overrides);
}

export function originFinder(layers: Layers): (path: readonly (string | number)[]) => string | undefined {
  return (path) => {
    for (let n = path.length; n > 0; n--) {
      const hit = layers.origins.get(dotted(path.slice(0, n)));
      if (hit) return hit;
    }
    return layers.fileLabel;
  };
}

export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as object)) deepFreeze(v);
  }
  return value;
}
