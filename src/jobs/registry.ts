/**
 * Built-in job types. Handler paths resolve next to this module and take its extension, so they
 * work from the sources (.ts, run through tsx) and from dist (.js). The dataset types carry the legacy
 * service's per-type defaults (data/typeDefaults.ts); the others take the settings' defaults.
 */
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionMode, JobTypeDefinition, RetryPolicy } from '../types.js';
import { DATA_TYPE_DEFAULTS, DATA_TYPE_MODULES, type DataTypeName } from './data/typeDefaults.js';

export interface JobTypeDefaults {
  mode: ExecutionMode;
  timeoutMs: number;
  maxAttempts: number;
  priority: number;
  retry: RetryPolicy;
}

const DEMO_TYPES = ['noop', 'sleep', 'echo', 'fail'] as const;

export const DATA_JOB_TYPES = Object.keys(DATA_TYPE_MODULES) as DataTypeName[];

export const BUILTIN_JOB_TYPES = [...DEMO_TYPES, ...DATA_JOB_TYPES] as const;

export type BuiltinJobType = (typeof DEMO_TYPES)[number] | DataTypeName;

const here = fileURLToPath(import.meta.url);
const ext = extname(here) || '.js';

const isDataType = (name: string): name is DataTypeName => name in DATA_TYPE_MODULES;

/** Absolute path of a built-in handler module. */
export function builtinHandlerPath(name: BuiltinJobType): string {
  const rel = isDataType(name) ? `./data/${DATA_TYPE_MODULES[name]}` : `./builtin/${name}`;
  return fileURLToPath(new URL(`${rel}${ext}`, import.meta.url));
}

export function builtinJobTypes(defaults: JobTypeDefaults): Record<string, JobTypeDefinition> {
  const out: Record<string, JobTypeDefinition> = {};
  for (const name of BUILTIN_JOB_TYPES) {
    const own = isDataType(name) ? DATA_TYPE_DEFAULTS[name] : defaults;
    out[name] = {
      name,
      handler: builtinHandlerPath(name),
      mode: defaults.mode,
      timeoutMs: own.timeoutMs,
      maxAttempts: own.maxAttempts,
      priority: own.priority,
      retry: { ...defaults.retry },
    };
  }
  return out;
}
