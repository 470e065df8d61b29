/**
 * Path fields of job inputs. `dataPath()` is a zod string that, when an input is parsed inside a
 * data-dir scope (`withDataDirs`), resolves the path with realpath (an output through its nearest
 * existing ancestor, lib/paths.ts) and refuses one outside the data dirs. The scope also records every
 * path the input declared, so the run-time context can refuse writes anywhere else.
 *
 * Outside a scope (the JSON Schema export, a plain `safeParse`) only the string shape is checked.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { z } from 'zod';
import { zodNow } from './lazyZod.js';
import { confine, type ConfinedPath, type DataRoots } from './lib/paths.js';

/** Data dirs by name, absolute paths (the resolved `dataDirs` setting). */
export type DataDirs = Readonly<Record<string, string>>;

export interface DataPathOptions {
  /** The named data dirs the path may be in; all of them when absent. */
  dirs?: readonly string[];
  /** 'write': the job may write there (and nowhere else). */
  mode: 'read' | 'write';
  /** What an existing path must be. */
  kind?: 'file' | 'dir';
  /** Refuse a path that does not exist (checked when the job runs, not at enqueue). */
  mustExist?: boolean;
  description?: string;
}

/** A path an input declared, resolved. */
export interface DeclaredPath extends ConfinedPath {
  mode: 'read' | 'write';
}

interface Scope {
  dataDirs: DataDirs;
  /** 'run': mustExist applies (at enqueue the file may come from an earlier job). */
  when: 'enqueue' | 'run';
  found: DeclaredPath[];
}

// Shared through a global symbol: a handler module may bring its own copy of this file (another
// install of jobd), and its dataPath fields must still see the scope that jobctl or the daemon opened.
const SCOPE_KEY = Symbol.for('jobd.dataPathScope');
const holder = globalThis as { [SCOPE_KEY]?: AsyncLocalStorage<Scope> };
const scope = (holder[SCOPE_KEY] ??= new AsyncLocalStorage<Scope>());

/** The JSON Schema keyword that marks a path field (`jobctl types --json` shows it). */
export const DATA_PATH_KEYWORD = 'x-jobd-data-path';

function rootsFor(dataDirs: DataDirs, dirs: readonly string[] | undefined): DataRoots | string {
  if (!dirs) return dataDirs;
  const missing = dirs.filter((d) => dataDirs[d] === undefined);
  if (missing.length) {
    const configured = Object.keys(dataDirs);
    return `the data dir${missing.length > 1 ? 's' : ''} ${missing.map((m) => `"${m}"`).join(', ')} ${
      missing.length > 1 ? 'are' : 'is'
    } not configured (setting dataDirs; configured: ${configured.length ? configured.join(', ') : 'none'})`;
  }
  return Object.fromEntries(dirs.map((d) => [d, dataDirs[d]!]));
}

/** A path field of a job input: an absolute path that must stay inside the (named) data dirs. */
export function dataPath(opts: DataPathOptions): z.ZodType<string, string> {
  const where = opts.dirs
    ? `the data dir${opts.dirs.length > 1 ? 's' : ''} ${opts.dirs.join(', ')}`
    : 'a data dir';
  return zodNow()
    .string({ error: `must be an absolute path inside ${where}` })
    .min(1, { error: `must be an absolute path inside ${where}` })
    .superRefine(async (value, ctx) => {
      const s = scope.getStore();
      if (!s) return;
      const roots = rootsFor(s.dataDirs, opts.dirs);
      if (typeof roots === 'string') {
        ctx.addIssue({ code: 'custom', message: roots });
        return;
      }
      try {
        const c = await confine(value, roots, {
          field: 'path',
          ...(opts.kind ? { kind: opts.kind } : {}),
          mustExist: s.when === 'run' && opts.mustExist === true,
          forWrite: opts.mode === 'write',
        });
        s.found.push({ ...c, mode: opts.mode });
      } catch (err) {
        const e = err as Error & { details?: { resolved?: string } };
        // confine names its field first ("path: ..."); the issue's own path names the field here.
        const why = e.message.replace(/^path: /, '');
        ctx.addIssue({ code: 'custom', message: why });
      }
    })
    .meta({
      ...(opts.description ? { description: opts.description } : {}),
      [DATA_PATH_KEYWORD]: {
        mode: opts.mode,
        ...(opts.dirs ? { dirs: [...opts.dirs] } : {}),
        ...(opts.kind ? { kind: opts.kind } : {}),
      },
    });
}

type Node = { _zod: { def: Record<string, unknown> & { type: string }; innerType?: unknown } };

/** Node types whose code can do anything, a parse of a path field included. */
const OPAQUE = new Set(['transform', 'custom', 'promise', 'function']);
const isSchema = (v: unknown): v is Node =>
  v !== null && typeof v === 'object' && typeof (v as Node)._zod?.def?.type === 'string';

/** Parts of zod's own making that run no user code (legacyNames' renaming step). */
const knownPure = new WeakSet<object>();
export function markPure(schema: object): void {
  knownPure.add(schema);
}

function opaque(schema: Node, seen: Set<unknown>): boolean {
  if (seen.has(schema) || knownPure.has(schema)) return false;
  seen.add(schema);
  const def = schema._zod.def;
  if (OPAQUE.has(def.type) || typeof def.transform === 'function') return true;
  // A refinement (dataPath's own check is one) may read the scope.
  if ((def.checks as Node[] | undefined)?.some((c) => c._zod.def.check === 'custom')) return true;
  const parts: unknown[] = def.type === 'lazy' ? [schema._zod.innerType] : [];
  for (const v of Object.values(def)) {
    if (Array.isArray(v)) parts.push(...v);
    else if (isSchema(v)) parts.push(v);
    else if (v && typeof v === 'object' && !('_zod' in v)) parts.push(...Object.values(v)); // an object's shape
  }
  return parts.some((p) => isSchema(p) && opaque(p, seen));
}

const needsScope = new WeakMap<object, boolean>();

/**
 * Whether parsing `schema` may meet a dataPath field, of this copy of jobd or another: any
 * refinement, transform or custom part counts. A schema of plain zod types and built-in checks
 * (`z.unknown()`, objects of numbers and strings) is parsed without the scope: entering an
 * AsyncLocalStorage turns on promise hooks for the whole process (Node 20), which then cost every
 * request of the HTTP server a few per cent.
 */
export function mayDeclarePaths(schema: object): boolean {
  let need = needsScope.get(schema);
  if (need === undefined) {
    need = !isSchema(schema) || opaque(schema, new Set());
    needsScope.set(schema, need);
  }
  return need;
}

/**
 * Run `parse` with the data dirs in scope: every dataPath field it meets is confined to them. Returns
 * the parse result and the paths the input declared.
 */
export async function withDataDirs<T>(
  dataDirs: DataDirs,
  when: Scope['when'],
  parse: () => Promise<T>,
): Promise<{ result: T; paths: DeclaredPath[] }> {
  const s: Scope = { dataDirs, when, found: [] };
  const result = await scope.run(s, parse);
  return { result, paths: s.found };
}
