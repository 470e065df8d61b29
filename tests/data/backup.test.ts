import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createBackup } from '../../src/jobs/data/lib/backup.js';
import { readManifest } from '../../src/jobs/data/lib/manifest.js';
import { makeDataset } from '../fixtures/data/archives.js';
import { allGone, pidsWithArg, recordingContext, runCoreChild, tempDir } from './helpers.js';

let base: { dir: string; cleanup(): Promise<void> };
let converted: string;
let backupRoot: string;
let env: { dataDirs: Record<string, string> };

beforeEach(async () => {
  base = await tempDir('backup');
  converted = join(base.dir, 'converted');
  backupRoot = join(base.dir, 'backup');
  await mkdir(converted, { recursive: true });
  await mkdir(backupRoot, { recursive: true });
  env = { dataDirs: { converted, backup: backupRoot } };
});
afterEach(() => base.cleanup());

/** Disk use in bytes, each hard-linked inode counted once (du's default). */
const du = (p: string): number =>
  Number(execFileSync('du', ['-s', '--block-size=1', p]).toString().split('\t')[0]);
const sha = (p: string): string => execFileSync('sha256sum', [p]).toString().split(' ')[0]!;

describe('backup_creation', () => {
  it('snapshots with a manifest; an unchanged second backup adds about 0 bytes and re-reads nothing; a change is picked up', async () => {
    const ds = join(converted, 'ds1');
    const names = await makeDataset(ds, 30, 64 * 1024);
    const first = await createBackup({ source_dir: ds }, recordingContext(), env);
    expect(first.previous_snapshot).toBeNull();
    expect(first).toMatchObject({ files: 31, hashed_files: 31, new_files: 31 });
    const m1 = await readManifest(first.snapshot_path);
    expect(m1.files.map((f) => f.path).sort()).toEqual([...names].sort());
    for (const f of m1.files.slice(0, 5)) {
      expect(f.sha256).toBe(sha(join(ds, f.path)));
      expect(f.size).toBe((await stat(join(ds, f.path))).size);
      expect(f.mtime_ms).toBe((await stat(join(ds, f.path))).mtime.getTime());
    }
    const before = du(join(backupRoot, 'ds1'));
    const second = await createBackup({ source_dir: ds }, recordingContext(), env);
    const added = du(join(backupRoot, 'ds1')) - before;
    expect(second.previous_snapshot).toBe(first.snapshot_path);
    expect(second).toMatchObject({ files: 31, hashed_files: 0, new_files: 0 });
    expect(second.new_bytes).toBeLessThan(1024); // the manifest's header: the file list is a hard link
    expect((await stat(join(second.snapshot_path, 'files.json'))).ino).toBe(
      (await stat(join(first.snapshot_path, 'files.json'))).ino,
    );
    expect((await readManifest(second.snapshot_path)).files).toEqual(m1.files);
    expect(added).toBeLessThan(64 * 1024); // directories and the manifest; the data is hard links
    expect((await stat(join(second.snapshot_path, 'data', names[0]!))).ino).toBe(
      (await stat(join(first.snapshot_path, 'data', names[0]!))).ino,
    );

    await writeFile(join(ds, names[1]!), randomBytes(1000));
    const third = await createBackup({ source_dir: ds }, recordingContext(), env);
    expect(third).toMatchObject({ hashed_files: 1, new_files: 1 });
    const m3 = await readManifest(third.snapshot_path);
    expect(m3.files.find((f) => f.path === names[1])!.sha256).toBe(sha(join(ds, names[1]!)));
    expect((await readdir(join(backupRoot, 'ds1'))).filter((n) => !n.startsWith('.'))).toHaveLength(3);
  });

  it('a cancel stops rsync; a SIGKILL leaves no snapshot in place and the re-run completes', async () => {
    const ds = join(converted, 'big');
    await mkdir(ds);
    for (let i = 0; i < 30; i++) await writeFile(join(ds, `f${i}.bin`), randomBytes(1 << 20));
    const backupDir = join(backupRoot, 'big');
    const ctx = recordingContext();
    let pid = 0;
    const log = ctx.log;
    // Cancel the moment rsync is started: mid-run however fast the machine is.
    ctx.log = (msg, extra) => {
      log(msg, extra);
      if (msg === 'rsync: started') {
        pid = extra!.pid as number;
        ctx.controller.abort(new Error('cancelled'));
      }
    };
    const run = createBackup({ source_dir: ds }, ctx, env);
    await expect(run).rejects.toMatchObject({ name: 'ToolAbortedError' });
    expect(pid).toBeGreaterThan(0);
    await allGone([pid], 'rsync');
    expect(await readdir(backupDir)).toEqual([]);

    const child = runCoreChild('backup', 'createBackup', { source_dir: ds }, env);
    const started = await child.waitEvent((e) => e.log === 'rsync: started', 'rsync started');
    // Killed at once: a /proc scan first gave a loaded machine time to finish the whole copy.
    child.proc.kill('SIGKILL');
    const rsyncPid = (started.extra as { pid: number }).pid;
    const pids = [rsyncPid, ...(await pidsWithArg(backupDir)).filter((p) => p !== rsyncPid)];
    await child.exited;
    expect(child.events.some((e) => 'result' in e)).toBe(false);
    await allGone(pids, 'the killed run');
    const left = await readdir(backupDir);
    expect(left.every((n) => n.includes('jobd-tmp'))).toBe(true);
    const res = await createBackup({ source_dir: ds }, recordingContext(), env);
    expect(res.files).toBe(30);
    expect(await readdir(backupDir)).toEqual([res.snapshot_path.split('/').at(-1)]);
  });
});
