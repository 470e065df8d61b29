import { afterEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DataDirLockedError, LOCK_FILE, openDurableStore } from '../../src/embedded/persistence.js';
import { MongoClient } from 'mongodb';
import { readStat } from '../../src/embedded/processIdentity.js';
import { startEmbeddedProcess } from '../helpers/embeddedProcess.js';
import { useTempDirs } from '../fixtures/embedded/tempDir.js';
import { waitUntil } from '../helpers/waitFor.js';

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

  it('records its own start time and boot id beside its pid', () => {
    const dir = tempDir();
    const s = openDurableStore(dir);
    const owner = JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')) as Record<string, unknown>;
    s.close();
    expect(owner).toMatchObject({
      pid: process.pid,
      startTicks: readStat(process.pid)?.startTicks,
      bootId: readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(),
    });
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

describe('durable store: a lock that pid reuse cannot fool', () => {
  const live: ChildProcess[] = [];
  afterEach(async () => {
    for (const c of live.splice(0)) {
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGKILL');
        await once(c, 'exit');
      }
    }
  });

  /** A real, unrelated, live process. */
  function sleeper(): ChildProcess & { pid: number } {
    const child = spawn('sleep', ['600'], { stdio: 'ignore' });
    live.push(child);
    return child as ChildProcess & { pid: number };
  }

  function writeLock(dir: string, owner: Record<string, unknown>): void {
    writeFileSync(
      join(dir, LOCK_FILE),
      JSON.stringify({ hostname: hostname(), token: 'old', startedAt: 'before the crash', ...owner }),
    );
  }

  const bootId = (): string => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();

  /** Opens the directory, expecting the old lock to be taken over; returns what the store logged. */
  function takesOver(dir: string): string {
    const messages: string[] = [];
    const s = openDurableStore(dir, { log: (m) => messages.push(m) });
    expect(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8'))).toMatchObject({ pid: process.pid });
    s.close();
    return messages.join('\n');
  }

  it('takes over a lock whose pid now belongs to another live process, started at another time', async () => {
    const dir = tempDir();
    const other = sleeper();
    await waitUntil(() => readStat(other.pid) !== undefined, {
      what: 'the sleep process to appear in /proc',
    });
    const ticks = Number((readStat(other.pid) as { startTicks: string }).startTicks);
    writeLock(dir, { pid: other.pid, startTicks: String(ticks - 100), bootId: bootId() });
    expect(takesOver(dir)).toMatch(
      new RegExp(`took over the lock of process ${other.pid} .*started at another time`),
    );
    expect(other.exitCode).toBeNull(); // and nothing happened to that process
  });

  it('takes over a lock whose pid is now a thread of another process, even from a lock that records only a pid', async () => {
    const dir = tempDir();
    // a node process has several threads; each thread id passes kill(tid, 0)
    const other = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    live.push(other);
    const pid = other.pid as number;
    const tid = await waitUntil(
      () => {
        try {
          return readdirSync(`/proc/${pid}/task`)
            .map(Number)
            .find((t) => t !== pid);
        } catch {
          return undefined;
        }
      },
      { what: 'a thread of the node process' },
    );
    process.kill(tid, 0); // what used to decide: the thread id looks like a live process
    // the thread's own start time, and a lock in the old format (pid only)
    for (const mark of [{ startTicks: readStat(tid)?.startTicks, bootId: bootId() }, {}]) {
      writeLock(dir, { pid: tid, ...mark });
      expect(takesOver(dir)).toContain(`pid ${tid} is now a thread of process ${pid}`);
    }
  });

  it('takes over a lock from an earlier boot, though its pid and start time match a live process', async () => {
    const dir = tempDir();
    const other = sleeper();
    await waitUntil(() => readStat(other.pid) !== undefined, {
      what: 'the sleep process to appear in /proc',
    });
    const startTicks = readStat(other.pid)?.startTicks;
    writeLock(dir, { pid: other.pid, startTicks, bootId: '00000000-0000-4000-8000-000000000000' });
    expect(takesOver(dir)).toContain('the machine has restarted since');
  });

  it('takes over the lock of an owner that has exited but not yet been reaped (a zombie)', async () => {
    const dir = tempDir();
    // The shell starts a child in the background and becomes `sleep`, which never reaps children;
    // once it has, the child is killed and stays a zombie.
    const parent = spawn('sh', ['-c', 'sleep 600 & echo $!; exec sleep 600'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    live.push(parent);
    const [line] = (await once(
      createInterface({ input: parent.stdout as NodeJS.ReadableStream }),
      'line',
    )) as [string];
    const zombie = Number(line);
    const comm = (pid: number): string | undefined => {
      try {
        return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      } catch {
        return undefined;
      }
    };
    await waitUntil(() => comm(parent.pid as number) === 'sleep', { what: 'the shell to become sleep' });
    process.kill(zombie, 'SIGKILL');
    await waitUntil(() => readStat(zombie)?.state === 'Z', { what: `process ${zombie} to become a zombie` });
    process.kill(zombie, 0); // what used to decide: a zombie still passes kill(pid, 0)
    writeLock(dir, { pid: zombie });
    expect(takesOver(dir)).toContain(`process ${zombie} has exited`);
  });

  it('jobd-embedded restarts after a SIGKILL although its old pid now belongs to another live process', async () => {
    const dir = tempDir();
    const server = await startEmbeddedProcess({ dataDir: dir });
    const client = new MongoClient(server.uri, { serverSelectionTimeoutMS: 10_000 });
    await client.connect();
    await client.db('app').collection<{ _id: number }>('jobs').insertOne({ _id: 1 });
    await client.close(true);
    await server.kill();
    // the dead server's lock, as if the kernel had handed its pid to an unrelated process
    const left = JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')) as Record<string, unknown>;
    expect(left).toMatchObject({ pid: server.pid, startTicks: expect.any(String) });
    const other = sleeper();
    writeLock(dir, { ...left, pid: other.pid });

    const restarted = await startEmbeddedProcess({ dataDir: dir });
    try {
      await restarted.waitForLine(
        new RegExp(`took over the lock of process ${other.pid} .*started at another time`),
      );
      const again = new MongoClient(restarted.uri, { serverSelectionTimeoutMS: 10_000 });
      await again.connect();
      expect(await again.db('app').collection('jobs').find().toArray()).toEqual([{ _id: 1 }]);
      await again.close(true);
    } finally {
      await restarted.stop();
    }
  });

  it('still refuses while the recorded process is the one running: same pid, start time and boot', async () => {
    const dir = tempDir();
    const other = sleeper();
    await waitUntil(() => readStat(other.pid) !== undefined, {
      what: 'the sleep process to appear in /proc',
    });
    writeLock(dir, { pid: other.pid, startTicks: readStat(other.pid)?.startTicks, bootId: bootId() });
    expect(() => openDurableStore(dir)).toThrow(
      new RegExp(`data directory ${dir} is locked: it is in use by process ${other.pid}`),
    );
    expect(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8'))).toMatchObject({
      pid: other.pid,
      token: 'old',
    });
  });
});
