/** jobctl workflow submit|show|list|cancel, jobctl tree, enqueue --depends-on; bad input exits 2. */
import { MongoClient } from 'mongodb';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { testDbName, testMongoUri } from '../helpers/db.js';
import { inProcessCalls } from './inProcess.js';
import { run, tempDir, writeSettings, type RunOptions } from './proc.js';

function ctl(label: string) {
  const database = testDbName(label);
  const settings = writeSettings({ dataDir: './var' });
  const call = (args: string[], opts: RunOptions = {}) =>
    run('jobctl', [...args, '--settings', settings, '--mongo-uri', testMongoUri()], {
      ...opts,
      env: { JOBD_DATABASE: database, ...opts.env },
    });
  const json = async <T = Record<string, unknown>>(args: string[]): Promise<T> => {
    const r = await call([...args, '--json']);
    if (r.code !== 0) throw new Error(`jobctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  // The same calls in this process (inProcess.ts): for variants whose process-level behaviour (exit
  // code, output through a pipe) a real call in this file already checks.
  const { here, hereJson } = inProcessCalls(['--settings', settings, '--mongo-uri', testMongoUri()], {
    env: { JOBD_DATABASE: database },
  });
  return { database, call, json, here, hereJson };
}

async function countJobs(database: string): Promise<number> {
  const client = new MongoClient(testMongoUri(), { serverSelectionTimeoutMS: 10_000 });
  try {
    await client.connect();
    return await client.db(database).collection('jobs').countDocuments();
  } finally {
    await client.close();
  }
}

describe('jobctl workflow', () => {
  it('submit, show (--json and drawn), list, cancel; tree', async () => {
    const c = ctl('ctl_workflow');
    const dir = tempDir();
    const file = join(dir, 'wf.json');
    writeFileSync(
      file,
      JSON.stringify({
        name: 'nightly',
        jobs: [
          { key: 'sync', type: 'echo', params: { step: 1 } },
          { key: 'convert', type: 'echo', dependsOn: ['sync'] },
          { key: 'validate', type: 'echo', dependsOn: ['convert'] },
          { key: 'backup', type: 'echo', dependsOn: ['convert'] },
        ],
      }),
    );
    const sub = await c.json<{ id: string; created: boolean; state: string; jobs: Record<string, string> }>([
      'workflow',
      'submit',
      file,
    ]);
    expect(sub).toMatchObject({ created: true, state: 'running' });
    const shown = await c.json<{ state: string; jobs: { key: string; state: string }[] }>([
      'workflow',
      'show',
      sub.id,
    ]);
    expect(Object.fromEntries(shown.jobs.map((j) => [j.key, j.state]))).toEqual({
      sync: 'queued',
      convert: 'waiting',
      validate: 'waiting',
      backup: 'waiting',
    });
    const drawn = await c.call(['workflow', 'show', sub.id]);
    expect(drawn.code).toBe(0);
    expect(drawn.stdout).toContain('nightly');
    expect(drawn.stdout).toMatch(/2 .*validate/);
    // Real processes for submit, show (JSON and drawn) and the exit code 3; the rest in-process.
    const list = await c.hereJson<{ _id: string; name: string }[]>(['workflow', 'list']);
    expect(list.map((w) => w._id)).toContain(sub.id);
    const cancelled = await c.hereJson<{ state: string; cancelled: string[] }>([
      'workflow',
      'cancel',
      sub.id,
    ]);
    expect(cancelled.state).toBe('cancelled');
    expect(cancelled.cancelled).toHaveLength(4);
    const tree = await c.hereJson<{ id: string; state: string }[]>(['tree', sub.jobs.sync!]);
    expect(tree).toEqual([expect.objectContaining({ id: sub.jobs.sync, state: 'cancelled' })]);
    expect((await c.call(['workflow', 'show', 'nope'])).code).toBe(3);
  });

  it('a cycle, an unknown key or an unknown dependency id exits 2 with a clear message; nothing is written', async () => {
    const c = ctl('ctl_workflow_bad');
    const dir = tempDir();
    const cyc = join(dir, 'cycle.json');
    writeFileSync(
      cyc,
      JSON.stringify({
        name: 'cyc',
        jobs: [
          { key: 'a', type: 'echo', dependsOn: ['b'] },
          { key: 'b', type: 'echo', dependsOn: ['a'] },
        ],
      }),
    );
    const r1 = await c.call(['workflow', 'submit', cyc]);
    expect(r1.code).toBe(2);
    expect(r1.stderr).toContain('cycle: "a" → "b" → "a"');
    const unk = join(dir, 'unknown.json');
    writeFileSync(
      unk,
      JSON.stringify({ name: 'u', jobs: [{ key: 'a', type: 'echo', dependsOn: ['ghost'] }] }),
    );
    // The first refusal as a real process (exit 2), the others in-process.
    const r2 = await c.here(['workflow', 'submit', unk]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toContain('"ghost", which is not a key');
    const r3 = await c.here(['enqueue', 'echo', '--depends-on', '0123456789abcdef01234567']);
    expect(r3.code).toBe(2);
    expect(r3.stderr).toContain('do not exist: 0123456789abcdef01234567');
    expect(await countJobs(c.database)).toBe(0);
  });
});
