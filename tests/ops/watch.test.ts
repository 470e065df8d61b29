/**
 * jobctl watch with stdout a pipe: plain lines as jobs change, and a clean exit (code 0) on SIGINT.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openTestDb, type TestDb } from '../helpers/db.js';
import { Proc } from '../cli/proc.js';
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
});
