/**
 * jobctl doctor as a subprocess: each check's status and hint, and the exit code (0 when every check is
 * ok or warn, 1 when one fails). The tools are the real ones on PATH; a missing one is made missing by
 * giving the process a PATH without it.
 */
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestDb, type TestDb } from '../helpers/db.js';
import { run } from '../cli/proc.js';

interface Check {
  name: string;
  status: 'ok' | 'warn' | 'fail';
  detail: string;
  hint?: string;
}
interface Report {
  status: 'ok' | 'warn' | 'fail';
  checks: Check[];
}

let t: TestDb;
let dir: string;
beforeAll(async () => {
  t = await openTestDb('doctor');
  dir = await mkdtemp(join(tmpdir(), 'jobd-doctor-'));
});
afterAll(async () => {
  await t.close();
  await rm(dir, { recursive: true, force: true });
});

function byName(r: Report, name: string): Check {
  const c = r.checks.find((x) => x.name === name);
  if (!c) throw new Error(`no check "${name}" in ${r.checks.map((x) => x.name).join(', ')}`);
  return c;
}

async function doctor(
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<{ code: number | null; report: Report; stderr: string }> {
  const r = await run('jobctl', ['doctor', '--json', ...args], {
    env: { JOBD_DATA_DIR: join(dir, 'data'), ...env },
  });
  return { code: r.code, report: JSON.parse(r.stdout) as Report, stderr: r.stderr };
}

describe('jobctl doctor', () => {
  it('reports the database, its missing indexes until jobd creates them, and the tools', async () => {
    const db = ['--mongo-uri', t.uri, '--database', t.dbName];
    const fresh = await doctor(db);
    expect(fresh.code, fresh.stderr).toBe(0);
    expect(byName(fresh.report, 'database')).toMatchObject({ status: 'ok' });
    expect(byName(fresh.report, 'database').detail).toMatch(/^reachable, version \d+\.\d+/);
    expect(byName(fresh.report, 'indexes')).toMatchObject({ status: 'warn' });
    expect(byName(fresh.report, 'indexes').detail).toMatch(/^missing on jobs: /);
    expect(fresh.report.status).toBe('warn');
    const rsyncVersion = execFileSync('rsync', ['--version'], { encoding: 'utf8' }).split('\n')[0]!;
    expect(byName(fresh.report, 'tool rsync')).toEqual({
      name: 'tool rsync',
      status: 'ok',
      detail: rsyncVersion.trim(),
    });
    expect(byName(fresh.report, 'writable dataDir')).toMatchObject({
      status: 'ok',
      detail: join(dir, 'data'),
    });

    // Enqueuing creates jobd's indexes; the warning goes.
    const enq = await run('jobctl', ['enqueue', 'echo', '--params', '{"message":"hi"}', ...db], {
      env: { JOBD_DATA_DIR: join(dir, 'data') },
    });
    expect(enq.code, enq.stderr).toBe(0);
    const after = await doctor(db);
    expect(byName(after.report, 'indexes')).toMatchObject({ status: 'ok' });
    expect(after.code).toBe(0);
  });

  it('fails on a data dir it cannot write and warns on a missing tool, with the fix in the hint', async () => {
    // A PATH holding the real rsync and rclone but no zstd.
    const bin = join(dir, 'bin');
    await mkdir(bin);
    for (const tool of ['rsync', 'rclone']) {
      const path = execFileSync('which', [tool], { encoding: 'utf8' }).trim();
      await symlink(path, join(bin, tool));
    }
    // A file where a data dir should be: it cannot be created or written.
    const blocker = join(dir, 'not-a-dir');
    await writeFile(blocker, 'x');
    const r = await doctor(['--mongo-uri', t.uri, '--database', t.dbName], {
      PATH: bin,
      JOBD_DATA_DIRS: `raw=${join(blocker, 'raw')}`,
    });
    expect(r.code).toBe(1);
    expect(r.report.status).toBe('fail');
    const raw = byName(r.report, 'writable dataDirs.raw');
    expect(raw.status).toBe('fail');
    expect(raw.detail).toContain(join(blocker, 'raw'));
    expect(raw.hint).toMatch(/create .* and give the jobd user write access, or change dataDirs\.raw/);
    expect(byName(r.report, 'tool zstd')).toMatchObject({ status: 'warn', detail: 'not found on PATH' });
    expect(byName(r.report, 'tool zstd').hint).toContain('apt-get install zstd');
    expect(byName(r.report, 'tool rsync').status).toBe('ok');
  });

  it('fails when the database cannot be reached, and still runs the local checks', async () => {
    const r = await run('jobctl', ['doctor', '--mongo-uri', 'mongodb://127.0.0.1:1'], {
      env: { JOBD_DATA_DIR: join(dir, 'data') },
    });
    expect(r.code).toBe(1);
    // The table for people: one row a check, and the worst status last.
    expect(r.stdout).toMatch(/database\s+│ fail\s+│ unreachable: .*ECONNREFUSED/);
    expect(r.stdout).toContain('check mongoUri, the network and the credentials');
    expect(r.stdout).toMatch(/writable dataDir\s+│ ok/);
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('result: fail');
  });
});
