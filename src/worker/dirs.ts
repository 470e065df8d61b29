/**
 * The daemon's folders are made (and proven writable) before anything uses them, with a bounded
 * walk: Node's recursive mkdir loops forever on some special file systems (a path under /proc).
 */
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import type { ResolvedConfig } from '../config/types.js';

/** Deeper than any real path; a walk up that does not end by then is refused. */
const MAX_DEPTH = 256;

/** Node's message, which starts with the error code ("ENOENT: no such file or directory, mkdir ..."). */
function reason(err: unknown): string {
  return String((err as Error)?.message ?? err);
}

/** Creates `path` (and missing parents) if needed and checks that files can be written in it. */
export function makeWritableDir(path: string, setting: string): void {
  const target = resolve(path);
  const missing: string[] = [];
  let p = target;
  for (let depth = 0; ; depth++) {
    if (depth > MAX_DEPTH) throw new ConfigError(`${setting} ${path}: too deeply nested`);
    let isDir: boolean;
    try {
      isDir = statSync(p).isDirectory();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        throw new ConfigError(`${setting} ${path}: cannot use ${p} (${reason(err)})`);
      missing.push(p);
      const parent = dirname(p);
      if (parent === p) throw new ConfigError(`${setting} ${path}: no existing parent folder`);
      p = parent;
      continue;
    }
    if (!isDir) throw new ConfigError(`${setting} ${path}: ${p} exists and is not a folder`);
    break;
  }
  for (const dir of missing.reverse()) {
    try {
      mkdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw new ConfigError(
        `${setting} ${path}: cannot create ${dir} (${reason(err)}); choose a folder on a normal, writable file system`,
      );
    }
  }
  const probe = join(target, `.jobd-write-test-${process.pid}`);
  try {
    writeFileSync(probe, '');
    rmSync(probe, { force: true });
  } catch (err) {
    throw new ConfigError(`${setting} ${path}: jobd cannot write in this folder (${reason(err)})`);
  }
}

/** The folders a running daemon writes to: job logs and the embedded database. */
export function prepareWorkDirs(config: ResolvedConfig): void {
  makeWritableDir(config.logDir, 'logDir');
  if (config.mongoUri === 'embedded' && config.embedded.dataDir)
    makeWritableDir(config.embedded.dataDir, 'embedded.dataDir');
}

/** Everything jobd writes to: its data folder, the pidfile's folder, and the work folders. */
export function prepareDaemonDirs(config: ResolvedConfig): void {
  makeWritableDir(config.dataDir, 'dataDir');
  makeWritableDir(dirname(config.pidFile), 'pidFile');
  prepareWorkDirs(config);
}
