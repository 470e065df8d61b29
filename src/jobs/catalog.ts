/**
 * The job-type catalog: each registered type with its queue, description, defaults and schemas, read
 * from its handler module. A module declares schemas with a default export made by defineJobType, or
 * with named exports `input` and `output` (zod schemas, optional `description` and `queue`); a module
 * with neither has no schema and its params are not checked.
 *
 * Loading a module imports it (its top level runs); its handler runs only in the sandbox, or in the
 * daemon for a type in mode inline.
 */
import { register } from 'node:module';
import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import type { JobTypeDefinition } from '../types.js';
import { isDefinedJobType, type DefinedJobType, type JobTypeDefaults } from './defineJobType.js';
import { provideZod } from './lazyZod.js';

// Job types defined with `schemas: (z) => …` build them with this process's zod.
provideZod(z);

export interface CatalogEntry {
  name: string;
  definition: JobTypeDefinition;
  queue: string;
  description?: string;
  /** Settings the module suggests (shown by `jobctl types`; the type's settings win). */
  defaults: JobTypeDefaults;
  /** Absent when the module declares no input schema. */
  input?: z.ZodType;
  output?: z.ZodType;
  legacyNames: Readonly<Record<string, string>>;
}

/** The queue of a type whose module is not loaded: its setting, else its name. */
export function queueOf(def: Pick<JobTypeDefinition, 'name' | 'queue'>): string {
  return def.queue ?? def.name;
}

function isZod(v: unknown): v is z.ZodType {
  return v instanceof z.ZodType;
}

let jobdHook = false;

/** Let modules outside jobd `import 'jobd'` here too, as the sandbox lets their handlers (jobdResolveHook). */
function registerJobdHook(): void {
  if (jobdHook) return;
  jobdHook = true;
  const hook = import.meta.url.endsWith('.ts') ? '../jobdResolveHook.mts' : '../jobdResolveHook.mjs';
  register(hook, { parentURL: import.meta.url, data: { parentURL: import.meta.url } });
}

function isJobdMissing(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  return (
    !!e &&
    e.code === 'ERR_MODULE_NOT_FOUND' &&
    typeof e.message === 'string' &&
    e.message.startsWith("Cannot find package 'jobd' ")
  );
}

async function importModule(spec: string): Promise<Record<string, unknown>> {
  const url = isAbsolute(spec) ? pathToFileURL(spec).href : spec;
  try {
    return (await import(url)) as Record<string, unknown>;
  } catch (err) {
    if (isJobdMissing(err) && !jobdHook) {
      // The module imports jobd, which is not installed beside it. The failed load is cached under
      // its URL, so it is read again under another (the query names why).
      registerJobdHook();
      return (await import(`${url}${url.includes('?') ? '&' : '?'}jobd-resolved`)) as Record<string, unknown>;
    }
    // A TypeScript handler outside a TypeScript runtime: load it through tsx, as the sandbox does.
    if ((err as { code?: unknown }).code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw err;
    const api = (await import('tsx/esm/api' as string)) as {
      tsImport(spec: string, parent: string): Promise<Record<string, unknown>>;
    };
    return api.tsImport(url, import.meta.url);
  }
}

const moduleCache = new Map<string, Promise<Record<string, unknown>>>();

/**
 * A handler module, imported once per process (jobd's resolve hook and tsx as needed): the catalog
 * reads its schemas, and the daemon runs the handlers of inline types from it.
 */
export function loadHandlerModule(spec: string): Promise<Record<string, unknown>> {
  let p = moduleCache.get(spec);
  if (!p) {
    p = importModule(spec);
    p.catch(() => moduleCache.delete(spec));
    moduleCache.set(spec, p);
  }
  return p;
}

/** What a module declares about its type; undefined fields when it declares nothing. */
function declared(mod: Record<string, unknown>): Partial<DefinedJobType> & { found: boolean } {
  const dflt = mod.default;
  if (isDefinedJobType(dflt)) {
    // Read one by one: input, output and legacyNames are getters (schemas built on first use).
    return {
      found: true,
      name: dflt.name,
      description: dflt.description,
      queue: dflt.queue,
      defaults: dflt.defaults,
      input: dflt.input,
      output: dflt.output,
      legacyNames: dflt.legacyNames,
    };
  }
  if (isZod(mod.input)) {
    return {
      found: true,
      input: mod.input,
      ...(isZod(mod.output) ? { output: mod.output } : {}),
      ...(typeof mod.description === 'string' ? { description: mod.description } : {}),
      ...(typeof mod.queue === 'string' ? { queue: mod.queue } : {}),
      legacyNames: {},
    };
  }
  return { found: false };
}

/** One type's entry; throws ConfigError (exit 2) when its module cannot be imported. */
export async function loadCatalogEntry(def: JobTypeDefinition): Promise<CatalogEntry> {
  if (def.system) {
    // jobd's own jobs have no module: the daemon runs them itself.
    return {
      name: def.name,
      definition: def,
      queue: def.queue ?? def.name,
      description: `jobd's own ${def.system} job, fired by the schedule of the same name; run by the daemon, not in a child`,
      defaults: {},
      legacyNames: {},
    };
  }
  let mod: Record<string, unknown>;
  try {
    mod = await loadHandlerModule(def.handler);
  } catch (err) {
    throw new ConfigError(
      `job type "${def.name}": cannot load its schemas from ${def.handler}: ${(err as Error)?.message ?? String(err)}`,
      { cause: err },
    );
  }
  const d = declared(mod);
  return {
    name: def.name,
    definition: def,
    // The settings' queue wins, then the module's, then the type's name.
    queue: def.queue ?? d.queue ?? def.name,
    ...(d.description !== undefined ? { description: d.description } : {}),
    defaults: d.defaults ?? {},
    ...(d.input ? { input: d.input } : {}),
    ...(d.output ? { output: d.output } : {}),
    legacyNames: d.legacyNames ?? {},
  };
}

/** Every type's entry, by name. */
export async function loadCatalog(
  jobTypes: Readonly<Record<string, JobTypeDefinition>>,
): Promise<Record<string, CatalogEntry>> {
  const entries = await Promise.all(Object.values(jobTypes).map(loadCatalogEntry));
  return Object.fromEntries(entries.map((e) => [e.name, e]));
}

/** A type's input and output as JSON Schema (what a client may send, what the job returns). */
export function jsonSchemas(entry: CatalogEntry): { input: unknown; output: unknown } {
  const conv = (schema: z.ZodType | undefined, io: 'input' | 'output'): unknown =>
    schema ? z.toJSONSchema(schema, { io, unrepresentable: 'any' }) : null;
  return { input: conv(entry.input, 'input'), output: conv(entry.output, 'output') };
}
