/**
 * jobctl watch with stdout a pipe: plain lines as jobs change, and a clean exit (code 0) on SIGINT. On a
 * terminal (a real pseudo-terminal, from python3's pty module): it redraws in place, and Ctrl-C typed
 * into the terminal ends it with code 0.
 */
import { spawn } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openTestDb, type TestDb } from '../helpers/db.js';
import { BIN, Proc } from '../cli/proc.js';
import { insertJobs, jobDoc } from './jobDocs.js';

let t: TestDb;
beforeEach(async () => {
  t = await openTestDb('watch');
});
afterEach(async () => {
  await t.close();
});

describe('jobctl watch', () => {
  it('prints a line per progress change when not a terminal, and exits 0 on Ctrl-C', async () => {
    const p = new Proc('jobctl', ['watch', '--type', 'echo', '--mongo-uri', t.uri, '--database', t.dbName]);
    try {
      await p.waitForLine('watching jobs of type echo');
      const now = new Date();
      const [id] = await insertJobs(t.db, [
        jobDoc({
          state: 'running',
          startedAt: now,
          progress: { percent: 10, message: 'copying', updatedAt: now },
        }),
        jobDoc({ type: 'other', state: 'running', startedAt: now }),
      ]);
      const first = await p.waitForLine(id!);
      expect(first).toMatch(/running .*\[#+\.+\]\s+10% .*copying/);
      await t.db.collection('jobs').updateOne({ _id: id } as never, {
        $set: { progress: { percent: 60, message: 'half', updatedAt: new Date() } },
      });
      expect(await p.waitForLine(/60% .*half/)).toContain(id!);
      expect(p.stdout).not.toContain('other');
    } finally {
      p.child.kill('SIGINT');
    }
    expect(await p.exited).toEqual({ code: 0, signal: null });
  });

  it('redraws in place on a terminal and ends with code 0 when Ctrl-C is typed', async () => {
    // pty.spawn runs the command on a new pseudo-terminal and copies our stdin to it, so a 0x03 written
    // there is a real Ctrl-C: the terminal turns it into SIGINT for jobctl's process group.
    const PTY = 'import os, pty, sys\nsys.exit(os.waitstatus_to_exitcode(pty.spawn(sys.argv[1:])))';
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, TERM: 'xterm' };
    const child = spawn(
      'python3',
      ['-c', PTY, process.execPath, BIN.jobctl, 'watch', '--mongo-uri', t.uri, '--database', t.dbName],
      { env, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let out = '';
    const waiters: { test: () => boolean; resolve: () => void }[] = [];
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      for (const w of waiters.splice(0)) (w.test() ? w.resolve : () => waiters.push(w))();
    });
    const exited = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
    const waitFor = (test: () => boolean, what: string): Promise<void> =>
      test()
        ? Promise.resolve()
        : new Promise((resolve, reject) => {
            const timer = setTimeout(
              () => reject(new Error(`no ${what} within 90 s; output: ${out}`)),
              90_000,
            );
            waiters.push({
              test,
              resolve: () => {
                clearTimeout(timer);
                resolve();
              },
            });
          });
    try {
      await waitFor(() => out.includes('jobd watch '), 'first frame');
      const now = new Date();
      const [id] = await insertJobs(t.db, [
        jobDoc({
          state: 'running',
          startedAt: now,
          progress: { percent: 10, message: 'copying', updatedAt: now },
        }),
      ]);
      await waitFor(() => /\[#+\.+\]\s+10% .*copying/.test(out), 'frame at 10%');
      const framesBefore = out.split('\x1b[H\x1b[J').length;
      await t.db.collection('jobs').updateOne({ _id: id } as never, {
        $set: { progress: { percent: 60, message: 'half', updatedAt: new Date() } },
      });
      await waitFor(() => /60% .*half/.test(out), 'frame at 60%');
      // Each frame homes the cursor and clears the screen, then draws the header and one line a job.
      const frames = out.split('\x1b[H\x1b[J');
      expect(frames.length).toBeGreaterThan(framesBefore);
      const last = frames.at(-1)!;
      expect(last).toMatch(/^jobd watch \S+ {2}1 job\(s\)/);
      expect(last).toContain(id!);
      expect(last).not.toContain('10%');
      // No plain-line mode on a terminal.
      expect(out).not.toContain('watching jobs');
      child.stdin.write('\x03');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
