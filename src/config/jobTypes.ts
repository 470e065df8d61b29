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
  }

  return jobTypes;
}
