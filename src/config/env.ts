/**
 * Settings given as text: JOBD_* environment variables and command-line flags. Every scalar setting has
 * a variable named after its dotted key (see load.ts); the text is coerced to the type the schema wants.
 */
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { deepMerge, setPath, type Json, type Layers } from './layers.js';
import { didYouMean, dotted, formatValue, settingsSchema } from './validate.js';

/** Values given on the command line (strings as commander hands them over). */
export interface FlagValues {
  mongoUri?: string;
  database?: string;
  logLevel?: string;
  concurrency?: string | number;
  dataDir?: string;
}

const FLAG_PATHS: Record<keyof FlagValues, { path: string[]; flag: string }> = {
  mongoUri: { path: ['mongoUri'], flag: '--mongo-uri' },
  database: { path: ['database'], flag: '--database' },
  logLevel: { path: ['logLevel'], flag: '--log-level' },
  concurrency: { path: ['worker', 'concurrency'], flag: '--concurrency' },
  dataDir: { path: ['dataDir'], flag: '--data-dir' },
};

type Kind = 'string' | 'number' | 'boolean' | 'list';
interface Leaf {
  path: string[];
  kind: Kind;
  nullable: boolean;
}

const SHORT_ALIASES: Record<string, string[]> = { JOBD_CONCURRENCY: ['worker', 'concurrency'] };
/** JOBD_ variables that are not settings and must not be reported as unknown. */
const NOT_SETTINGS = new Set(['JOBD_SETTINGS']);

function screaming(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

export function envName(path: readonly string[]): string {
  return `JOBD_${path.map(screaming).join('__')}`;
}

/** Every scalar setting the environment can set (job types excluded), found by walking the schema. */
function settingLeaves(): Leaf[] {
  const out: Leaf[] = [];
  const walk = (schema: z.ZodType, path: string[], nullable: boolean): void => {
    let s = schema;
    let isNull = nullable;
    for (;;) {
      if (s instanceof z.ZodOptional) s = s.unwrap() as z.ZodType;
      else if (s instanceof z.ZodNullable) {
        isNull = true;
        s = s.unwrap() as z.ZodType;
      } else break;
    }
    if (s instanceof z.ZodObject) {
      for (const [k, v] of Object.entries(s.shape as Record<string, z.ZodType>)) walk(v, [...path, k], false);
      return;
    }
    if (s instanceof z.ZodRecord) return;
    // dataDirs: an object by name or a list; as text, a list ("name=path,...") or a JSON object.
    if (s instanceof z.ZodUnion && s.options.some((o) => o instanceof z.ZodArray)) {
      out.push({ path, kind: 'list', nullable: isNull });
      return;
    }
    const kind: Kind =
      s instanceof z.ZodNumber
        ? 'number'
        : s instanceof z.ZodBoolean
          ? 'boolean'
          : s instanceof z.ZodArray
            ? 'list'
            : 'string';
    out.push({ path, kind, nullable: isNull });
  };
  walk(settingsSchema, [], false);
  return out;
}

let leavesCache: Leaf[] | undefined;
function leaves(): Leaf[] {
  return (leavesCache ??= settingLeaves());
}

/** Text → the type a setting wants; anything that does not parse stays text so validation names it. */
function coerce(raw: string, leaf: Leaf): unknown {
  const t = raw.trim();
  if (leaf.nullable && t === 'null') return null;
  switch (leaf.kind) {
    case 'number': {
      if (t !== '' && /^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/.test(t)) return Number(t);
      return raw;
    }
    case 'boolean': {
      const l = t.toLowerCase();
      if (['true', '1', 'yes', 'on'].includes(l)) return true;
      if (['false', '0', 'no', 'off'].includes(l)) return false;
      return raw;
    }
    case 'list':
      if (t.startsWith('{')) {
        try {
          return JSON.parse(t) as unknown;
        } catch {
          return raw;
        }
      }
      return t === '' ? [] : t.split(',').map((p) => p.trim());
    default:
      return raw;
  }
}

export function envLayer(env: Record<string, string | undefined>, layers: Layers): void {
  const known = new Map<string, Leaf>();
  for (const leaf of leaves()) known.set(envName(leaf.path), leaf);
  const byPath = new Map<string, Leaf>();
  for (const leaf of leaves()) byPath.set(dotted(leaf.path), leaf);

  const envObj: Json = {};
  const problems: string[] = [];
  // Aliases first so the full name wins when both are set.
  const names = Object.keys(env)
    .filter((n) => n.startsWith('JOBD_') && env[n] !== undefined && !NOT_SETTINGS.has(n))
    .sort((a, b) => Number(a in SHORT_ALIASES ? 0 : 1) - Number(b in SHORT_ALIASES ? 0 : 1));
  for (const name of names) {
    const raw = env[name]!;
    const aliasPath = SHORT_ALIASES[name];
    const leaf = aliasPath ? byPath.get(dotted(aliasPath)) : known.get(name);
    if (!leaf) {
      if (name.includes('__')) {
        const hint = didYouMean(name, [...known.keys()]);
        problems.push(
          `settings: environment variable ${name} = ${formatValue(raw)} is not allowed: it names no setting${
            hint ? `; did you mean ${hint}?` : ''
          }`,
        );
      }
      continue;
    }
    setPath(envObj, leaf.path, coerce(raw, leaf));
    layers.origins.set(dotted(leaf.path), `from ${name}`);
    layers.cwdRelative.add(dotted(leaf.path));
  }
  if (problems.length) throw new ConfigError(problems.join('\n'));
  layers.merged = deepMerge(layers.merged, envObj);
}

export function flagLayer(flags: FlagValues, layers: Layers): void {
  const byPath = new Map(leaves().map((l) => [dotted(l.path), l] as const));
  const flagObj: Json = {};
  for (const [key, value] of Object.entries(flags) as [keyof FlagValues, unknown][]) {
    if (value === undefined) continue;
    const { path, flag } = FLAG_PATHS[key];
    const leaf = byPath.get(dotted(path))!;
    setPath(flagObj, path, typeof value === 'string' ? coerce(value, leaf) : value);
    layers.origins.set(dotted(path), `from ${flag}`);
    layers.cwdRelative.add(dotted(path));
  }
  layers.merged = deepMerge(layers.merged, flagObj);
}
