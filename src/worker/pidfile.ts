/**
 * jobd's pidfile: one daemon per pidfile. The file holds the pid as plain decimal text (what
 * systemd's PIDFile= and `kill $(cat ...)` expect).
 *
 * - A live jobd owning it: refuse (AlreadyRunningError, exit code 4) naming that pid.
 * - A stale one (dead pid, or a live pid that is not jobd because the pid was reused): taken over
 *   with a warning.
 * - Written atomically: a temp file is hard-linked into place (fails if someone else got there first)
 *   or renamed over a stale file, then read back to make sure it is ours.
 * - Released only if it still names this process.
 */
import { linkSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { JobdError } from '../errors.js';
import { makeWritableDir } from './dirs.js';

export class AlreadyRunningError extends JobdError {
  readonly pid: number;
  constructor(message: string, pid: number) {
    super(message, 'JOBD_ALREADY_RUNNING');
    this.name = 'AlreadyRunningError';
    this.pid = pid;
  }
}

export interface PidfileLogger {
  warn(obj: Record<string, unknown>, msg?: string): void;
}

export interface Pidfile {
  readonly path: string;
  readonly pid: number;
  /** Remove the file if it still names this process. Safe to call more than once. */
  release(): void;
}

export interface PidfileOptions {
  logger?: PidfileLogger;
  pid?: number;
  /** Is this pid a running jobd? Default: alive and (where /proc exists) its command line mentions jobd. */
  isLiveJobd?: (pid: number) => boolean;
}

function readPid(path: string): number | null | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const pid = Number.parseInt(text.trim(), 10);
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function defaultIsLiveJobd(pid: number): boolean {
  if (!isAlive(pid)) return false;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return /jobd/i.test(cmdline);
  } catch {
    // No /proc (or not readable): a live pid is assumed to be jobd; refusing is the safe side.
    return true;
  }
}

export function acquirePidfile(path: string, options: PidfileOptions = {}): Pidfile {
  const pid = options.pid ?? process.pid;
  const isLiveJobd = options.isLiveJobd ?? defaultIsLiveJobd;
  makeWritableDir(dirname(path), 'pidFile');
  const tmp = `${path}.${pid}.tmp`;
  writeFileSync(tmp, `${pid}\n`, { mode: 0o644 });
  try {
    for (let round = 0; round < 5; round++) {
      try {
        linkSync(tmp, path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const owner = readPid(path);
        if (owner === undefined) continue; // removed meanwhile: try again
        if (owner !== pid) {
          if (owner !== null && isLiveJobd(owner)) {
            throw new AlreadyRunningError(
              `jobd is already running with pid ${owner} (pidfile ${path}); stop it first, or give this daemon another pidFile`,
              owner,
            );
          }
          options.logger?.warn(
            { pidFile: path, stalePid: owner },
            owner === null
              ? `pidfile ${path} held no valid pid; taking it over`
              : `pidfile ${path} names pid ${owner}, which is not a running jobd; taking it over`,
          );
          renameSync(tmp, path);
          writeFileSync(tmp, `${pid}\n`); // recreated so a later round can link or rename again
        }
      }
      if (readPid(path) === pid) {
        const handle: Pidfile = {
          path,
          pid,
          release() {
            try {
              if (readPid(path) === pid) unlinkSync(path);
            } catch {
              // already gone, or the folder is unreadable at exit: nothing left to clean
            }
          },
        };
        return handle;
      }
      // Another process renamed its file over ours between the rename and the read-back: check it again.
    }
    const owner = readPid(path);
    throw new AlreadyRunningError(
      `could not take the pidfile ${path}; pid ${owner ?? '?'} holds it`,
      owner ?? 0,
    );
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // renamed into place
    }
  }
}
