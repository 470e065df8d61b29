/**
 * Built-in job types. Handler paths resolve next to this module and take its extension, so they
 * work from the sources (.ts, run through tsx) and from dist (.js).
 */
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionMode, JobTypeDefinition, RetryPolicy } from '../types.js';

export interface JobTypeDefaults {
  mode: ExecutionMode;
  timeoutMs: number;
  maxAttempts: number;
  priority: number;
  retry: RetryPolicy;
}

export const BUILTIN_JOB_TYPES = ['noop', 'sleep', 'echo', 'fail'] as const;

const here = fileURLToPath(import.meta.url);
const ext = extname(here) || '.js';

/** Absolute path of a built-in handler module. */
export function builtinHandlerPath(name: (typeof BUILTIN_JOB_TYPES)[number]): string {
  return fileURLToPath(new URL(`./builtin/${name}${ext}`, import.meta.url));
}

export function builtinJobTypes(defaults: JobTypeDefaults): Record<string, JobTypeDefinition> {
  const out: Record<string, JobTypeDefinition> = {};
  for (const name of BUILTIN_JOB_TYPES) {
    out[name] = {
      name,
      handler: builtinHandlerPath(name),
      mode: defaults.mode,
      timeoutMs: defaults.timeoutMs,
      maxAttempts: defaults.maxAttempts,
      priority: defaults.priority,
      retry: { ...defaults.retry },
    };
  }
  return out;
}
