/** Job-type resolution: built-ins, then the settings' jobTypes over them, each handler resolved to a file. */
import { existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import type { JobTypeDefinition, RetryPolicy } from '../types.js';
import { MIB } from './defaults.js';
import type { Layers } from './layers.js';
import type { ResolvedConfig } from './types.js';
import { settingsLine, type OriginOf, type SettingsInput } from './validate.js';

/** A handler is a file path (relative to the settings file's folder) or a package specifier. */
export function resolveHandler(
  spec: string,
  baseDir: string,
  key: string,
  origin: string | undefined,
): string {
  const pathLike = /^(\.{1,2}[/\\]|[/\\]|[A-Za-z]:[/\\]|file:)/.test(spec);
  if (pathLike) {
    const file = spec.startsWith('file:') ? new URL(spec).pathname : resolve(baseDir, spec);
    if (!existsSync(file)) {
      throw new ConfigError(settingsLine(key, spec, `the handler file ${file} does not exist`, origin));
    }
    if (!statSync(file).isFile()) {
      throw new ConfigError(settingsLine(key, spec, `the handler ${file} is not a file`, origin));
    }
    return file;
  }
  const beside = resolve(baseDir, spec);
  if (existsSync(beside) && statSync(beside).isFile()) return beside;
  try {
    return createRequire(resolve(baseDir, 'settings.json')).resolve(spec);
  } catch {
    throw new ConfigError(
      settingsLine(
        key,
        spec,
        `the handler must be an existing file (looked for ${beside}) or an installed package; neither was found`,
        origin,
      ),
    );
  }
}

/**
 * The job types that read a named source of the settings' tabular.sources. Only their jobs get the
 * sources (URLs, headers, URIs: credentials) in their environment, so no other job, nor a program one
 * starts, sees them.
 */
export const SOURCE_READERS: ReadonlySet<string> = new Set([
  'api_ingestion',
  'database_ingestion',
  'data_aggregation',
]);

/**
 * Why a type cannot run inline (in the daemon's process), as [settings key, value, what is allowed], or
 * null. Inline jobs share the daemon's memory and environment: no memory limit can be enforced, no
 * per-job CUDA_VISIBLE_DEVICES can be set, and the tabular sources' credentials must not enter the
 * daemon's environment (every child would inherit them).
 */
function whyNotInline(def: JobTypeDefinition, key: string): [string, unknown, string] | null {
  if (def.memoryLimitBytes !== undefined) {
    return [
      `${key}.memoryLimitMb`,
      def.memoryLimitBytes / MIB,
      'a job type in mode "inline" runs in the daemon\'s own process, where no memory limit can apply; remove memoryLimitMb, or use mode "pooled" or "isolated"',
    ];
  }
  if ((def.needs?.gpus ?? 0) > 0) {
    return [
      `${key}.needs.gpus`,
      def.needs!.gpus,
      'a job type in mode "inline" shares the daemon\'s environment, so CUDA_VISIBLE_DEVICES cannot name its GPUs; use mode "pooled" or "isolated", or set needs.gpus to 0',
    ];
  }
  if (SOURCE_READERS.has(def.name)) {
    return [
      `${key}.mode`,
      'inline',
      `${def.name} reads tabular.sources, whose credentials must not enter the daemon's environment; must be "pooled" or "isolated"`,
    ];
  }
  return null;
}

export function toRecord(
  list: Record<string, JobTypeDefinition> | JobTypeDefinition[],
): Record<string, JobTypeDefinition> {
  if (!Array.isArray(list)) return { ...list };
  const out: Record<string, JobTypeDefinition> = {};
  for (const def of list) out[def.name] = def;
  return out;
}

export interface JobTypeContext {
  defaults: ResolvedConfig['defaults'];
  /** Problems found are pushed here; the loader reports them all at once. */
  problems: string[];
  retryOf: (base: RetryPolicy, over: Partial<RetryPolicy> | undefined, key: string) => RetryPolicy;
  originOf: OriginOf;
  layers: Layers;
  cwd: string;
  fileDir: string;
}

/** The settings' jobTypes laid over the built-ins: a built-in keeps what the settings do not change. */
export function resolveJobTypes(
  builtins: Record<string, JobTypeDefinition>,
  settings: NonNullable<SettingsInput['jobTypes']>,
  ctx: JobTypeContext,
): Record<string, JobTypeDefinition> {
  const { defaults, problems, retryOf, originOf, layers, cwd, fileDir } = ctx;
  const jobTypes = builtins;
  for (const [name, t] of Object.entries(settings)) {
    const base = jobTypes[name];
    const key = `jobTypes.${name}`;
    let handler = base?.handler;
    if (t.handler !== undefined) {
      try {
        handler = resolveHandler(
          t.handler,
          layers.cwdRelative.has(`${key}.handler`) ? cwd : fileDir,
          `${key}.handler`,
          originOf(['jobTypes', name, 'handler']),
        );
      } catch (err) {
        problems.push((err as Error).message);
        continue;
      }
    }
    if (handler === undefined) {
      problems.push(
        `settings: ${key}.handler is missing: "${name}" is not a built-in job type, so it needs a handler module path${
          layers.fileLabel ? ` (${layers.fileLabel})` : ''
        }`,
      );
      continue;
    }
    const concurrency = t.concurrency ?? base?.concurrency;
    const queue = t.queue ?? base?.queue;
    const memoryLimitBytes = t.memoryLimitMb !== undefined ? t.memoryLimitMb * MIB : base?.memoryLimitBytes;
    // Each key of needs replaces the built-in's; { "gpus": 0 } takes a need away.
    const needs = t.needs !== undefined ? { ...base?.needs, ...t.needs } : base?.needs;
    jobTypes[name] = {
      name,
      handler,
      mode: t.mode ?? base?.mode ?? defaults.mode,
      timeoutMs: t.timeoutMs ?? base?.timeoutMs ?? defaults.timeoutMs,
      maxAttempts: t.maxAttempts ?? base?.maxAttempts ?? defaults.maxAttempts,
      priority: t.priority ?? base?.priority ?? defaults.priority,
      ...(concurrency !== undefined ? { concurrency } : {}),
      ...(memoryLimitBytes !== undefined ? { memoryLimitBytes } : {}),
      ...(needs !== undefined ? { needs } : {}),
      retry: retryOf(base?.retry ?? defaults.retry, t.retry, `${key}.retry`),
      ...(queue !== undefined ? { queue } : {}),
    };
    const why = jobTypes[name]!.mode === 'inline' ? whyNotInline(jobTypes[name]!, key) : null;
    if (why) problems.push(settingsLine(why[0], why[1], why[2], originOf(why[0].split('.'))));
  }

  return jobTypes;
}
