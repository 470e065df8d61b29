/**
 * Built-in job types. Handler paths resolve next to this module and take its extension, so they
 * work from the sources (.ts, run through tsx) and from dist (.js). The dataset types carry the legacy
 * service's per-type defaults (data/typeDefaults.ts), the imaging types theirs (imaging/typeDefaults.ts:
 * isolated), the tabular types theirs (tabular/typeDefaults.ts), session_import its own; the others take the settings' defaults.
 */
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionMode, JobTypeDefinition, RetryPolicy } from '../types.js';
import { DATA_TYPE_DEFAULTS, DATA_TYPE_MODULES, type DataTypeName } from './data/typeDefaults.js';
import { IMAGING_TYPE_DEFAULTS, IMAGING_TYPE_MODULES, type ImagingTypeName } from './imaging/typeDefaults.js';
import { TABULAR_TYPES, type TabularTypeDefaults, type TabularTypeName } from './tabular/typeDefaults.js';

export interface JobTypeDefaults {
  mode: ExecutionMode;
  timeoutMs: number;
  maxAttempts: number;
  priority: number;
  retry: RetryPolicy;
}

const DEMO_TYPES = ['noop', 'sleep', 'echo', 'fail'] as const;

export const DATA_JOB_TYPES = Object.keys(DATA_TYPE_MODULES) as DataTypeName[];

export const IMAGING_JOB_TYPES = Object.keys(IMAGING_TYPE_MODULES) as ImagingTypeName[];

export const TABULAR_JOB_TYPES = Object.keys(TABULAR_TYPES) as TabularTypeName[];

/**
 * session_import: light (it reads metadata and spawns), so pooled; a watching run may poll for hours,
 * so its timeout is a day (watch.stop_after_idle_ms stays below it).
 */
const SESSION_TYPES = {
  session_import: { module: 'sessionImport', timeoutMs: 24 * 60 * 60_000, maxAttempts: 5 },
} as const;
type SessionTypeName = keyof typeof SESSION_TYPES;

export const BUILTIN_JOB_TYPES = [
  ...DEMO_TYPES,
  ...DATA_JOB_TYPES,
  ...IMAGING_JOB_TYPES,
  ...TABULAR_JOB_TYPES,
  ...(Object.keys(SESSION_TYPES) as SessionTypeName[]),
] as const;

export type BuiltinJobType =
  (typeof DEMO_TYPES)[number] | DataTypeName | ImagingTypeName | TabularTypeName | SessionTypeName;

const here = fileURLToPath(import.meta.url);
const ext = extname(here) || '.js';

const isDataType = (name: string): name is DataTypeName => name in DATA_TYPE_MODULES;
const isImagingType = (name: string): name is ImagingTypeName => name in IMAGING_TYPE_MODULES;
const isSessionType = (name: string): name is SessionTypeName => name in SESSION_TYPES;
const tabularType = (name: string): TabularTypeDefaults | undefined =>
  Object.hasOwn(TABULAR_TYPES, name)
    ? (TABULAR_TYPES as Record<string, TabularTypeDefaults>)[name]
    : undefined;

/** Absolute path of a built-in handler module. */
export function builtinHandlerPath(name: BuiltinJobType): string {
  const tabular = tabularType(name);
  const rel = isDataType(name)
    ? `./data/${DATA_TYPE_MODULES[name]}`
    : isImagingType(name)
      ? `./imaging/${IMAGING_TYPE_MODULES[name]}`
      : isSessionType(name)
        ? `./imaging/${SESSION_TYPES[name].module}`
        : tabular
          ? `./tabular/${tabular.module}`
          : `./builtin/${name}`;
  return fileURLToPath(new URL(`${rel}${ext}`, import.meta.url));
}

/**
 * Whether `def` runs a built-in type from its own module (not a user's handler under a built-in's name).
 * No built-in module declares a queue (tests/unit/registry-queues.test.ts holds that), so such a
 * type's queue is its setting or its name, known without importing the module and all it imports.
 */
export function isOwnBuiltin(def: Pick<JobTypeDefinition, 'name' | 'handler'>): boolean {
  return (
    (BUILTIN_JOB_TYPES as readonly string[]).includes(def.name) &&
    def.handler === builtinHandlerPath(def.name as BuiltinJobType)
  );
}

export function builtinJobTypes(defaults: JobTypeDefaults): Record<string, JobTypeDefinition> {
  const out: Record<string, JobTypeDefinition> = {};
  for (const name of BUILTIN_JOB_TYPES) {
    const tabular = tabularType(name);
    const own = isDataType(name)
      ? DATA_TYPE_DEFAULTS[name]
      : isImagingType(name)
        ? { ...IMAGING_TYPE_DEFAULTS[name], priority: defaults.priority }
        : isSessionType(name)
          ? { ...SESSION_TYPES[name], priority: defaults.priority }
          : tabular
            ? { ...tabular, priority: defaults.priority }
            : defaults;
    out[name] = {
      name,
      handler: builtinHandlerPath(name),
      mode: isImagingType(name) ? IMAGING_TYPE_DEFAULTS[name].mode : tabular ? tabular.mode : defaults.mode,
      timeoutMs: own.timeoutMs,
      maxAttempts: own.maxAttempts,
      priority: own.priority,
      retry: { ...defaults.retry },
    };
  }
  return out;
}
