import { describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DataDirLockedError, LOCK_FILE, openDurableStore } from '../../src/embedded/persistence.js';
import { useTempDirs } from '../fixtures/embedded/tempDir.js';

const tempDir = useTempDirs('lock');
const FIXTURE = join(import.meta.dirname, '../fixtures/embedded/openStore.ts');

interface Opened {
  child: ChildProcess;
  /** The first line the fixture printed, parsed. */
  result: {
    opened?: true;
    pid?: number;
    error?: { name: string; code: string; message: string; pid?: number };
  };
  exited: Promise<[number | null, NodeJS.Signals | null]>;
}

/** Runs the fixture in a real second process and waits for its one-line verdict. */
async function openInChild(dir: string, hold: boolean): Promise<Opened> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, dir, ...(hold ? ['hold'] : [])], {
    cwd: join(import.meta.dirname, '../..'),
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const first = await Promise.race([
    once(lines, 'line').then(([l]) => l as string),
    exited.then(([code, sig]) => {
      throw new Error(`fixture exited (${code ?? sig}) without a verdict`);
    }),
  ]);
  return { child, result: JSON.parse(first) as Opened['result'], exited };
}

async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  const pid = child.pid as number;
  await once(child, 'exit');
  return pid;
}

describe('durable store: one process per data directory', () => {
  it('refuses a second open in the same process until the first is closed', () => {
    const dir = tempDir();
    const first = openDurableStore(dir);
    let err: unknown;
    try {
      openDurableStore(dir);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DataDirLockedError);
    expect(err).toMatchObject({
      name: 'DataDirLockedError',
      code: 'EMBEDDED_DATA_DIR_LOCKED',
      dir,
      pid: process.pid,
    });
    // also through another spelling of the same path
    expect(() => openDurableStore(`${dir}/.`)).toThrow(DataDirLockedError);
    first.close();
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
    openDurableStore(dir).close();
  });

  it('refuses a second real process with a message naming the directory and the owning pid', async () => {
    const dir = tempDir();
    const holder = await openInChild(dir, true);
    expect(holder.result.opened).toBe(true);
    try {
      const second = await openInChild(dir, false);
      const [code] = await second.exited;
      expect(code).toBe(3);
      expect(second.result.error).toMatchObject({
        name: 'DataDirLockedError',
        code: 'EMBEDDED_DATA_DIR_LOCKED',
        pid: holder.child.pid,
      });
      expect(second.result.error?.message).toContain(dir);
      expect(second.result.error?.message).toContain(`process ${holder.child.pid}`);
      // and this process is refused too
      expect(() => openDurableStore(dir)).toThrow(new RegExp(`${dir}.*process ${holder.child.pid}`));
    } finally {
      holder.child.stdin?.end();
      await holder.exited;
    }
    // a clean close released the lock
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
    const third = await openInChild(dir, false);
    expect(third.result.opened).toBe(true);
    expect((await third.exited)[0]).toBe(0);
  });

  it('takes over the lock of a process that was SIGKILLed, and keeps its data', async () => {
    const dir = tempDir();
    const seed = openDurableStore(dir);
    seed.append([{ op: 'insert', db: 'd', coll: 'c', doc: { _id: 1 } }]);
    seed.close();
    const holder = await openInChild(dir, true);
    expect(holder.result.opened).toBe(true);
    holder.child.kill('SIGKILL');
    const [, signal] = await holder.exited;
    expect(signal).toBe('SIGKILL');
    expect(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8'))).toMatchObject({ pid: holder.child.pid });

    const next = await openInChild(dir, false);
    expect(next.result.opened).toBe(true);
    expect((await next.exited)[0]).toBe(0);
    const s = openDurableStore(dir);
    expect(s.load().records).toHaveLength(1);
    s.close();
  });

  it('takes over a lock left by a dead pid, or by an earlier process that had our own pid', async () => {
    const dir = tempDir();
    const lock = join(dir, LOCK_FILE);
    const { hostname } = await import('node:os');
    for (const pid of [await deadPid(), process.pid]) {
      writeFileSync(lock, JSON.stringify({ pid, hostname: hostname(), token: 'old', startedAt: 'earlier' }));
      const s = openDurableStore(dir);
      expect(JSON.parse(readFileSync(lock, 'utf8'))).toMatchObject({ pid: process.pid });
      expect(JSON.parse(readFileSync(lock, 'utf8')).token).not.toBe('old');
      s.close();
    }
  });

  it('never takes over a lock it cannot check: another host, or an unreadable lock file', () => {
    const dir = tempDir();
    const lock = join(dir, LOCK_FILE);
    writeFileSync(
      lock,
      JSON.stringify({ pid: 4242, hostname: 'some-other-host', token: 't', startedAt: 'earlier' }),
    );
    expect(() => openDurableStore(dir)).toThrow(/process 4242 on host some-other-host.*remove .*LOCK/);
    writeFileSync(lock, '');
    expect(() => openDurableStore(dir)).toThrow(/lock file .*LOCK is unreadable/);
    expect(readFileSync(lock, 'utf8')).toBe('');
  });
});
