/**
 * One process per data directory.
 *
 * The lock is a file `LOCK` in the data directory holding {pid, hostname, token, startedAt} and the
 * owner's process start time and boot id (processIdentity.ts). It is published with link(2), which
 * fails if the name exists, so nobody ever sees a half-written lock. When LOCK names a process that is
 * gone (its pid no longer exists, or now belongs to another process or thread, or the machine has
 * rebooted since), the lock is stale and is taken over; takeovers are serialised through a second
 * file, `LOCK.takeover`, so two starters that both see the same stale lock cannot both win.
 *
 * Limits: liveness can only be checked for a process on this host and in this pid namespace. A lock
 * written on another host is never taken over (remove it by hand once sure). Without /proc (not Linux)
 * only kill(pid, 0) is available, and a reused pid makes the lock look held. A second process is
 * refused, not queued: starting two servers on one directory is a mistake to report, not to wait out.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { closeSync, linkSync, openSync, readFileSync, realpathSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ownMark, processLiveness, type ProcessMark } from './processIdentity.js';

export const LOCK_FILE = 'LOCK';
const TAKEOVER_FILE = 'LOCK.takeover';

export class DataDirLockedError extends Error {
  readonly code = 'EMBEDDED_DATA_DIR_LOCKED';
  readonly dir: string;
  /** The owning process, when the lock file names one. */
  readonly pid: number | undefined;
  constructor(dir: string, pid: number | undefined, detail: string) {
    super(`data directory ${dir} is locked: ${detail}`);
    this.name = 'DataDirLockedError';
    this.dir = dir;
    this.pid = pid;
  }
}

interface LockOwner extends ProcessMark {
  pid: number;
  hostname: string;
  token: string;
  startedAt: string;
}

/** Directories opened by this process (by real path): the pid check cannot tell us apart from ourselves. */
const openHere = new Set<string>();

export interface DirLock {
  release(): void;
}

/** `log` receives one line when a stale lock is taken over, saying why it was stale. */
export function acquireDirLock(dir: string, log: (message: string) => void = () => {}): DirLock {
  const key = realpathSync(dir);
  if (openHere.has(key)) {
    throw new DataDirLockedError(dir, process.pid, `it is already open in this process (pid ${process.pid})`);
  }
  const lockPath = join(dir, LOCK_FILE);
  const me: LockOwner = {
    pid: process.pid,
    hostname: hostname(),
    token: randomBytes(12).toString('hex'),
    startedAt: new Date().toISOString(),
    ...ownMark(),
  };

  if (!publish(dir, lockPath, me)) {
    const owner = readOwner(lockPath);
    const verdict = judge(dir, lockPath, owner);
    if (verdict) throw verdict;
    const stale = owner as LockOwner;
    const why = staleReason(stale);
    takeOver(dir, lockPath, stale, me);
    log(
      `data directory ${dir}: took over the lock of process ${stale.pid} (since ${stale.startedAt}), ` +
        `which is gone: ${why}`,
    );
  }
  openHere.add(key);

  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      openHere.delete(key);
      const current = readOwner(lockPath);
      if (current?.token === me.token) unlinkQuietly(lockPath);
    },
  };
}

/** Creates `path` holding `owner`, atomically; false if it already exists. */
function publish(dir: string, path: string, owner: LockOwner): boolean {
  const tmp = join(dir, `${LOCK_FILE}.${owner.pid}.${owner.token}.tmp`);
  const fd = openSync(tmp, 'wx');
  try {
    writeSync(fd, JSON.stringify(owner) + '\n');
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'ENOSYS') return publishWithoutLink(path, owner);
    throw err;
  } finally {
    unlinkQuietly(tmp);
  }
}

/** For file systems without hard links: exclusive create, then write (a reader may briefly see it empty). */
function publishWithoutLink(path: string, owner: LockOwner): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    writeSync(fd, JSON.stringify(owner) + '\n');
  } finally {
    closeSync(fd);
  }
  return true;
}

function readOwner(path: string): LockOwner | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const o = JSON.parse(text) as Partial<LockOwner>;
    if (typeof o.pid === 'number' && typeof o.token === 'string' && typeof o.hostname === 'string') {
      const owner: LockOwner = {
        pid: o.pid,
        token: o.token,
        hostname: o.hostname,
        startedAt: String(o.startedAt ?? '?'),
      };
      if (typeof o.startTicks === 'string') owner.startTicks = o.startTicks;
      if (typeof o.bootId === 'string') owner.bootId = o.bootId;
      return owner;
    }
  } catch {
    // fall through
  }
  return undefined;
}

/** An error when the owner holds the lock (or cannot be checked); undefined when the lock is stale. */
function judge(dir: string, lockPath: string, owner: LockOwner | undefined): DataDirLockedError | undefined {
  if (!owner) {
    return new DataDirLockedError(
      dir,
      undefined,
      `the lock file ${lockPath} is unreadable; if no server is using this directory, remove that file`,
    );
  }
  if (owner.hostname !== hostname()) {
    return new DataDirLockedError(
      dir,
      owner.pid,
      `it is held by process ${owner.pid} on host ${owner.hostname} (since ${owner.startedAt}), which cannot be checked from here; ` +
        `if that process is gone, remove ${lockPath}`,
    );
  }
  // Our own pid without an open store here: a previous incarnation (pid reuse, e.g. pid 1 in a container).
  if (owner.pid !== process.pid && isAlive(owner)) {
    return new DataDirLockedError(
      dir,
      owner.pid,
      `it is in use by process ${owner.pid} (since ${owner.startedAt}); stop that process first`,
    );
  }
  return undefined;
}

function staleReason(owner: LockOwner): string {
  if (owner.pid === process.pid) return `its pid is this process's own`;
  const v = processLiveness(owner.pid, owner);
  return v.alive ? 'it is running again' : v.why;
}

function isAlive(owner: LockOwner): boolean {
  return processLiveness(owner.pid, owner).alive;
}

function takeOver(dir: string, lockPath: string, stale: LockOwner, me: LockOwner): void {
  const mutexPath = join(dir, TAKEOVER_FILE);
  let haveMutex = publish(dir, mutexPath, me);
  if (!haveMutex) {
    const holder = readOwner(mutexPath);
    if (holder && holder.hostname === hostname() && holder.pid !== process.pid && isAlive(holder)) {
      // Someone else is taking over right now; whoever wins, the directory is not ours.
      const winner = readOwner(lockPath);
      throw new DataDirLockedError(
        dir,
        winner?.pid ?? holder.pid,
        `process ${winner?.pid ?? holder.pid} is taking it over from dead process ${stale.pid}`,
      );
    }
    // The takeover itself was interrupted by a crash; clear it and try once more.
    unlinkQuietly(mutexPath);
    haveMutex = publish(dir, mutexPath, me);
    if (!haveMutex)
      throw new DataDirLockedError(
        dir,
        undefined,
        `another process is taking over its stale lock ${lockPath}`,
      );
  }
  try {
    const current = readOwner(lockPath);
    if (current && current.token !== stale.token) {
      const verdict = judge(dir, lockPath, current);
      if (verdict) throw verdict;
    }
    unlinkQuietly(lockPath);
    if (!publish(dir, lockPath, me)) {
      const winner = readOwner(lockPath);
      throw new DataDirLockedError(dir, winner?.pid, `it was just taken by process ${winner?.pid ?? '?'}`);
    }
  } finally {
    unlinkQuietly(mutexPath);
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
