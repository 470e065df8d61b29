import { randomBytes } from 'node:crypto';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLegacyRsyncOptions } from '../../src/jobs/data/lib/rsyncOptions.js';
import { rsyncTransfer } from '../../src/jobs/data/lib/rsync.js';
import { makeDataset } from '../fixtures/data/archives.js';
import {
  allGone,
  expectSameFile,
  failure,
  freePort,
  pidsWithArg,
  recordingContext,
  runCoreChild,
  tempDir,
} from './helpers.js';
import { startRsyncDaemon, type RsyncDaemon } from './rsyncDaemon.js';

let base: { dir: string; cleanup(): Promise<void> };
let sync: string;
let moduleDir: string;
let daemon: RsyncDaemon;
let env: { dataDirs: Record<string, string> };

beforeAll(async () => {
  base = await tempDir('rsync');
  sync = join(base.dir, 'sync');
  moduleDir = join(base.dir, 'module');
  await mkdir(sync, { recursive: true });
  await mkdir(moduleDir, { recursive: true });
  env = { dataDirs: { sync } };
  daemon = await startRsyncDaemon(moduleDir, base.dir);
});
afterAll(async () => {
  await daemon.stop();
  await base.cleanup();
});

async function sameTree(a: string, b: string, names: string[]): Promise<void> {
  for (const n of names) await expectSameFile(join(a, n), join(b, n));
}

describe('rsync_transfer', () => {
  it('copies between local paths with progress2 progress and --stats figures', async () => {
    const src = join(sync, 'l1');
    const names = await makeDataset(src, 10, 50_000);
    const ctx = recordingContext();
    const res = await rsyncTransfer({ source: `${src}/`, destination: join(sync, 'l1-copy') }, ctx, env);
    await sameTree(src, join(sync, 'l1-copy'), names);
    expect(res).toMatchObject({ files_transferred: 11, bytes_transferred: 10 * 50_000 + 15, dry_run: false });
    expect(res.total_files).toBeGreaterThanOrEqual(11);
    expect(res.speed_bytes_per_sec).toBeGreaterThan(0);
    expect(ctx.progressed.some((p) => p.message?.includes('/s'))).toBe(true);
    expect(ctx.progressed.at(-1)!.percent).toBe(100);
    const again = await rsyncTransfer(
      { source: `${src}/`, destination: join(sync, 'l1-copy') },
      recordingContext(),
      env,
    );
    expect(again.files_transferred).toBe(0);
  });

  it('pushes to and pulls from an rsync daemon on loopback', async () => {
    const src = join(sync, 'push');
    const names = await makeDataset(src, 6, 10_000);
    const up = await rsyncTransfer(
      { source: `${src}/`, destination: daemon.url('pushed/') },
      recordingContext(),
      env,
    );
    expect(up.files_transferred).toBe(7);
    await sameTree(src, join(moduleDir, 'pushed'), names);
    const down = await rsyncTransfer(
      { source: daemon.url('pushed/'), destination: join(sync, 'pulled', 'here') },
      recordingContext(),
      env,
    );
    expect(down.files_transferred).toBe(7);
    await sameTree(src, join(sync, 'pulled', 'here'), names);
  });

  it('typed options: excludes, delete, dry run', async () => {
    const src = join(sync, 'o');
    await makeDataset(src, 3, 100);
    await writeFile(join(src, 'skip.tmp'), 'x');
    const dst = join(sync, 'o-copy');
    await mkdir(dst);
    await writeFile(join(dst, 'stale.txt'), 'old');
    const dry = await rsyncTransfer(
      { source: `${src}/`, destination: dst, options: { dry_run: true, delete: true } },
      recordingContext(),
      env,
    );
    expect(dry.dry_run).toBe(true);
    expect(await readdir(dst)).toEqual(['stale.txt']);
    await rsyncTransfer(
      {
        source: `${src}/`,
        destination: dst,
        options: { delete: true, excludes: ['*.tmp'], checksum: true, bwlimit: '50M' },
      },
      recordingContext(),
      env,
    );
    expect((await readdir(dst)).sort()).toEqual(['README.txt', 'run0', 'run1', 'run2']);
  });

  it('legacy rsync_options: allowed flags map onto the typed options; anything else is refused by name', async () => {
    expect(parseLegacyRsyncOptions('-avz --delete --exclude "*.log" --bwlimit=1000')).toEqual({
      archive: true,
      compress: true,
      delete: true,
      excludes: ['*.log'],
      bwlimit: '1000',
    });
    expect(parseLegacyRsyncOptions(['-aH', '--partial', '--timeout', '30'])).toEqual({
      archive: true,
      hard_links: true,
      partial: true,
      timeout: 30,
    });
    for (const [flags, named] of [
      ['-avz -e ssh', '-e'],
      ['--rsync-path=/tmp/evil', '--rsync-path=/tmp/evil'],
      ['-a --remove-source-files', '--remove-source-files'],
      ['--files-from=/etc/passwd', '--files-from=/etc/passwd'],
      ['-aX', '-X'],
    ] as const) {
      const err = await failure(
        rsyncTransfer(
          { source: `${sync}/`, destination: join(sync, 'nowhere'), rsync_options: flags },
          recordingContext(),
          env,
        ),
      );
      expect(err).toMatchObject({ name: 'DataInputError', code: 'JOBD_DO_NOT_RETRY' });
      expect(err.message).toContain(`"${named}`);
    }
    await expect(stat(join(sync, 'nowhere'))).rejects.toThrow(/ENOENT/);
  });

  it('refuses ssh remotes and paths outside the data dirs', async () => {
    await expect(
      rsyncTransfer({ source: 'host:/etc/', destination: join(sync, 'x') }, recordingContext(), env),
    ).rejects.toThrow(/remote-shell/);
    await expect(
      rsyncTransfer({ source: '/etc/', destination: join(sync, 'x') }, recordingContext(), env),
    ).rejects.toMatchObject({
      name: 'PathNotAllowedError',
    });
  });

  it('tool failures: a missing source is not retryable; an unreachable daemon is retryable', async () => {
    const missing = await failure(
      rsyncTransfer({ source: join(sync, 'no-such'), destination: join(sync, 'x') }, recordingContext(), env),
    );
    expect(missing).toMatchObject({ name: 'DataInputError', code: 'JOBD_DO_NOT_RETRY' });
    const port = await freePort();
    const down = await failure(
      rsyncTransfer(
        {
          source: `rsync://127.0.0.1:${port}/data/`,
          destination: join(sync, 'x'),
          options: { contimeout: 5 },
        },
        recordingContext(),
        env,
      ),
    );
    expect(down).toMatchObject({
      name: 'ToolFailedError',
      code: 'JOBD_TOOL_FAILED',
      retryable: true,
      exitCode: 10,
    });
    expect(down.message).toContain('Connection refused');
    const noModule = await failure(
      rsyncTransfer(
        { source: `rsync://127.0.0.1:${daemon.port}/nomodule/`, destination: join(sync, 'x') },
        recordingContext(),
        env,
      ),
    );
    expect(noModule).toMatchObject({ name: 'ToolFailedError', exitCode: 5 });
    expect(noModule.message).toContain('Unknown module');
  });

  async function slowSource(name: string): Promise<string> {
    const src = join(sync, name);
    await mkdir(src);
    for (let i = 0; i < 4; i++) await writeFile(join(src, `part${i}.bin`), randomBytes(2 << 20));
    return src;
  }

  it('a cancel mid-transfer stops every rsync process', async () => {
    const src = await slowSource('slow-cancel');
    const ctx = recordingContext();
    const run = rsyncTransfer(
      { source: `${src}/`, destination: join(sync, 'slow-cancel-copy'), options: { bwlimit: 500 } },
      ctx,
      env,
    );
    const pids = await (async () => {
      for (;;) {
        const p = await pidsWithArg(join(sync, 'slow-cancel-copy'));
        if (p.length && ctx.progressed.length > 1) return p;
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    ctx.controller.abort(new Error('cancelled'));
    await expect(run).rejects.toMatchObject({ name: 'ToolAbortedError' });
    await allGone(pids, 'rsync processes');
    expect(await pidsWithArg(join(sync, 'slow-cancel-copy'))).toEqual([]);
  });

  it('a SIGKILL of the process running it kills rsync; the re-run resumes and completes', async () => {
    const src = await slowSource('slow-kill');
    const dst = join(sync, 'slow-kill-copy');
    const child = runCoreChild(
      'rsync',
      'rsyncTransfer',
      { source: `${src}/`, destination: dst, options: { bwlimit: 1000 } },
      env,
    );
    await child.waitEvent(
      (e) => typeof e.progress === 'number' && (e.progress as number) > 0,
      'transfer under way',
    );
    const pids = await pidsWithArg(dst);
    expect(pids.length).toBeGreaterThan(0);
    child.proc.kill('SIGKILL');
    await child.exited;
    await allGone(pids, 'rsync processes of the killed run');
    const res = await rsyncTransfer({ source: `${src}/`, destination: dst }, recordingContext(), env);
    expect(res.files_transferred).toBeGreaterThan(0);
    await sameTree(src, dst, ['part0.bin', 'part1.bin', 'part2.bin', 'part3.bin']);
  });
});
