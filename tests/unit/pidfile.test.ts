import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { acquirePidfile, AlreadyRunningError } from '../../src/worker/pidfile.js';

function pidPath(): string {
  return join(mkdtempSync(join(tmpdir(), 'jobd-pid-')), 'sub', 'jobd.pid');
}

/** A pid that certainly belonged to a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  const pid = child.pid!;
  await new Promise((resolve) => child.once('exit', resolve));
  return pid;
}

describe('pidfile', () => {
  it('writes our pid and removes it on release', () => {
    const path = pidPath();
    const pf = acquirePidfile(path);
    expect(readFileSync(path, 'utf8')).toBe(`${process.pid}\n`);
    pf.release();
    expect(existsSync(path)).toBe(false);
    pf.release(); // twice is fine
  });

  it('refuses when a live jobd owns it, naming the pid', () => {
    const path = pidPath();
    acquirePidfile(path, { pid: 424242, isLiveJobd: () => false });
    let err: unknown;
    try {
      acquirePidfile(path, { isLiveJobd: (pid) => pid === 424242 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AlreadyRunningError);
    expect((err as Error).message).toContain('pid 424242');
    expect((err as AlreadyRunningError).code).toBe('JOBD_ALREADY_RUNNING');
    expect(readFileSync(path, 'utf8')).toBe('424242\n');
  });

  it('takes over a stale pidfile (dead pid) with a warning', async () => {
    const path = pidPath();
    const stale = await deadPid();
    acquirePidfile(path, { pid: stale, isLiveJobd: () => false });
    const warnings: string[] = [];
    const pf = acquirePidfile(path, { logger: { warn: (_o, msg) => warnings.push(msg ?? '') } });
    expect(readFileSync(path, 'utf8')).toBe(`${process.pid}\n`);
    expect(warnings.join('\n')).toContain(`pid ${stale}`);
    pf.release();
  });

  it('takes over a pidfile with garbage in it', () => {
    const path = pidPath();
    acquirePidfile(path).release();
    writeFileSync(path, 'not a pid');
    const pf = acquirePidfile(path);
    expect(readFileSync(path, 'utf8')).toBe(`${process.pid}\n`);
    pf.release();
  });

  it('release leaves a pidfile that is no longer ours', () => {
    const path = pidPath();
    const pf = acquirePidfile(path);
    writeFileSync(path, '999999\n');
    pf.release();
    expect(readFileSync(path, 'utf8')).toBe('999999\n');
  });
});
