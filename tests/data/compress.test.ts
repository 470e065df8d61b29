import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { link, mkdir, open, readdir, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compressDirectory } from '../../src/jobs/data/lib/compress.js';
import { extractArchive } from '../../src/jobs/data/lib/extract.js';
import { makeDataset } from '../fixtures/data/archives.js';
import { waitUntil } from '../helpers/waitFor.js';
import {
  allGone,
  expectSameFile,
  failure,
  isAlive,
  recordingContext,
  runCoreChild,
  tempDir,
} from './helpers.js';

let base: { dir: string; cleanup(): Promise<void> };
let conv: string;
let env: { dataDirs: Record<string, string> };

beforeEach(async () => {
  base = await tempDir('compress');
  conv = join(base.dir, 'converted');
  await mkdir(conv, { recursive: true });
  env = { dataDirs: { converted: conv } };
});
afterEach(() => base.cleanup());

/** Sets mtimes to 2025-12-31 23:59:59.9998 UTC with touch (not following a symlink). */
function lastHalfMillisecond(...paths: string[]): void {
  execFileSync('touch', ['-h', '-m', '-d', '@1767225599.9998', '--', ...paths]);
}

const sha256sum = (p: string): string => execFileSync('sha256sum', [p]).toString().split(' ')[0]!;

describe('data_compression', () => {
  it('packs tar.zst by default: a valid archive, sizes, ratio and the sha256 of the bytes written', async () => {
    const src = join(conv, 'ds1');
    const names = await makeDataset(src, 15, 8192);
    await writeFile(join(src, 'zeros.bin'), Buffer.alloc(1 << 20));
    await writeFile(join(src, 'empty.txt'), '');
    await symlink('README.txt', join(src, 'readme-link'));
    await link(join(src, 'README.txt'), join(src, 'README.hard'));
    const ctx = recordingContext();
    const res = await compressDirectory({ source_dir: src }, ctx, env);
    const out = join(conv, 'ds1.tar.zst');
    expect(res).toMatchObject({ output_path: out, format: 'tar.zst', files: 19 });
    expect(res.input_bytes).toBe(15 * 8192 + 15 + (1 << 20) + 15);
    expect(res.output_bytes).toBe((await stat(out)).size);
    expect(res.ratio).toBeCloseTo(res.output_bytes / res.input_bytes, 3);
    expect(res.sha256).toBe(sha256sum(out));
    execFileSync('zstd', ['-t', '-q', out]);
    const listing = execFileSync('tar', ['--zstd', '-tvf', out]).toString();
    expect(listing).toContain('ds1/readme-link -> README.txt');
    expect(listing).toMatch(
      /ds1\/README\.hard link to ds1\/README\.txt|ds1\/README\.txt link to ds1\/README\.hard/,
    );
    expect(ctx.progressed.at(-1)!.percent).toBe(100);
    // Round trip through file_extraction.
    await extractArchive({ archive: out, extract_dir: join(conv, 'back') }, recordingContext(), env);
    for (const n of names) await expectSameFile(join(src, n), join(conv, 'back', 'ds1', n));
    expect((await readdir(conv)).sort()).toEqual(['back', 'ds1', 'ds1.tar.zst']);
  });

  it('tar.zst takes odd names verbatim (a leading dash, wildcards, a newline) and leaves a FIFO out', async () => {
    const src = join(conv, 'odd');
    await mkdir(src);
    const names = ['-rf', '--files-from=x', 'a*b?[c]', 'new\nline', ' lead space'];
    for (const n of names) await writeFile(join(src, n), n);
    execFileSync('mkfifo', [join(src, 'pipe')]);
    const ctx = recordingContext();
    const res = await compressDirectory({ source_dir: src }, ctx, env);
    expect(res.files).toBe(names.length);
    expect(ctx.logs.some((l) => l.msg.includes('skipped') && JSON.stringify(l.extra).includes('pipe'))).toBe(
      true,
    );
    await extractArchive(
      { archive: res.output_path, extract_dir: join(conv, 'back') },
      recordingContext(),
      env,
    );
    expect((await readdir(join(conv, 'back', 'odd'))).sort()).toEqual([...names].sort());
    for (const n of names) await expectSameFile(join(src, n), join(conv, 'back', 'odd', n));
  });

  it("tar.gz stores each entry's own second, also for a time in a second's last half-millisecond", async () => {
    const src = join(conv, 'late');
    await mkdir(join(src, 'sub'), { recursive: true });
    await writeFile(join(src, 'sub', 'a.txt'), 'a');
    await writeFile(join(src, 'b.txt'), 'b');
    await symlink('b.txt', join(src, 'lnk'));
    lastHalfMillisecond(join(src, 'sub', 'a.txt'), join(src, 'lnk'), join(src, 'sub'), src);
    const res = await compressDirectory(
      { source_dir: src, compression_type: 'gzip' },
      recordingContext(),
      env,
    );
    const listing = execFileSync('tar', ['-tvzf', res.output_path, '--full-time']).toString();
    for (const name of ['late/sub/a.txt', 'late/lnk -> b.txt', 'late/sub', 'late'])
      expect(listing).toMatch(new RegExp(`2025-12-31 23:59:59 ${name.replace(/[.*?]/g, '\\$&')}/?\n`));
    // GNU tar compares every file's mtime (in seconds) and mode with the tree.
    execFileSync('tar', ['-z', '--compare', `--file=${res.output_path}`, '--directory', conv]);
  });

  it('tar.gz with a level, and the legacy lz4 as a real lz4 frame', async () => {
    const src = join(conv, 'ds2');
    await makeDataset(src, 5, 1000);
    const gz = await compressDirectory(
      { source_dir: src, compression_type: 'gzip', level: 9 },
      recordingContext(),
      env,
    );
    expect(gz.output_path).toBe(join(conv, 'ds2.tar.gz'));
    expect(execFileSync('tar', ['-tzf', gz.output_path]).toString()).toContain('ds2/README.txt');
    expect(gz.sha256).toBe(sha256sum(gz.output_path));
    const lz = await compressDirectory(
      { source_dir: src, compression_type: 'lz4', output_path: join(conv, 'out', 'ds2.tar.lz4') },
      recordingContext(),
      env,
    );
    expect(lz.format).toBe('tar.lz4');
    execFileSync('lz4', ['-t', '-q', lz.output_path]);
    const tarBytes = execFileSync('lz4', ['-d', '-c', '-q', lz.output_path]);
    expect(execFileSync('tar', ['-tf', '-'], { input: tarBytes }).toString()).toContain('ds2/README.txt');
  });

  it('refuses a bad level, an output inside the source, and paths outside the data dirs', async () => {
    const src = join(conv, 'ds3');
    await makeDataset(src, 2, 10);
    await expect(
      compressDirectory({ source_dir: src, compression_type: 'gzip', level: 12 }, recordingContext(), env),
    ).rejects.toThrow(/level: 12 is not allowed for tar.gz: must be 1 to 9/);
    await expect(
      compressDirectory({ source_dir: src, output_path: join(src, 'self.tar.zst') }, recordingContext(), env),
    ).rejects.toThrow(/inside source_dir/);
    const err = await failure(
      compressDirectory(
        { source_dir: src, output_path: join(base.dir, 'x.tar.zst') },
        recordingContext(),
        env,
      ),
    );
    expect(err).toMatchObject({
      name: 'PathNotAllowedError',
      message: expect.stringContaining('output_path'),
    });
  });

  it('a tree of big files goes to zstd as frames it reads itself: the same tar stream as GNU tar writes', async () => {
    const src = join(conv, 'frames');
    const deep = join(src, 'sub', 'd'.repeat(120));
    await mkdir(deep, { recursive: true });
    await writeFile(join(src, 'big.bin'), randomBytes(3 << 19));
    await writeFile(join(src, 'odd.bin'), Buffer.alloc((1 << 20) + 3, 7)); // not a whole block
    await writeFile(join(deep, `${'n'.repeat(110)}.bin`), randomBytes(1 << 20)); // a GNU long name
    await writeFile(join(src, 'small.txt'), 'small');
    await writeFile(join(src, 'empty'), '');
    await writeFile(join(src, '-rf\nx'), 'odd name');
    await symlink('small.txt', join(src, 'lnk'));
    await symlink('t'.repeat(150), join(src, 'long-target')); // a GNU long link name
    await link(join(src, 'big.bin'), join(src, 'big.hard'));
    // Times in a second's last half-millisecond: fs.Stats' Date rounds them into the next second, tar
    // stores the second they are in.
    lastHalfMillisecond(join(src, 'odd.bin'), join(src, 'lnk'), deep, join(src, 'sub'), src);
    const ctx = recordingContext();
    const res = await compressDirectory({ source_dir: src }, ctx, env);
    expect(ctx.logs.some((l) => l.msg === 'tar: started')).toBe(false);
    expect(res.files).toBe(7);
    expect(res.sha256).toBe(sha256sum(res.output_path));
    expect(ctx.progressed.at(-1)!.percent).toBe(100);
    execFileSync('zstd', ['-t', '-q', res.output_path]);
    const gnu = execFileSync(
      'tar',
      [
        ...[
          '--create',
          '--file=-',
          '--sort=name',
          '--format=gnu',
          '--numeric-owner',
          '--owner=0',
          '--group=0',
        ],
        ...['--directory', conv, 'frames'],
      ],
      { maxBuffer: 64 << 20 },
    );
    const ours = execFileSync('zstd', ['-d', '-q', '-c', res.output_path], { maxBuffer: 64 << 20 });
    // The listings first: a difference then names the entry and the field, not only "false".
    const listing = (tar: Buffer): string =>
      execFileSync('tar', ['-tv', '--full-time', '--numeric-owner', '-f', '-'], { input: tar }).toString();
    expect(listing(ours)).toBe(listing(gnu));
    expect(ours.equals(gnu)).toBe(true);
    // GNU tar reads it back and finds the tree unchanged (contents, modes, times, links).
    execFileSync('tar', ['--zstd', '--compare', `--file=${res.output_path}`, '--directory', conv]);
    expect((await readdir(conv)).sort()).toEqual(['frames', 'frames.tar.zst']);
    await extractArchive(
      { archive: res.output_path, extract_dir: join(conv, 'back') },
      recordingContext(),
      env,
    );
    await expectSameFile(join(src, 'odd.bin'), join(conv, 'back', 'frames', 'odd.bin'));
  });

  async function bigTree(name: string, files = 40, size = 3 << 19): Promise<string> {
    const src = join(conv, name);
    await mkdir(src);
    for (let i = 0; i < files; i++) await writeFile(join(src, `f${i}.bin`), randomBytes(size));
    return src;
  }

  it('a big file written while zstd reads it fails the run (retryable), with nothing left behind', async () => {
    // Level 19 on one thread takes a second or more for 1 MiB: the write lands while zstd runs.
    const src = await bigTree('big', 1, 1 << 20);
    const ctx = recordingContext();
    const run = compressDirectory({ source_dir: src, level: 19, threads: 1 }, ctx, env);
    await waitUntil(() => ctx.logs.some((l) => l.msg === 'zstd: started'), { what: 'zstd to start' });
    const fh = await open(join(src, 'f0.bin'), 'r+');
    await fh.write(Buffer.from('rewritten, same size'), 0, undefined, 0);
    await fh.close();
    await expect(run).rejects.toMatchObject({
      name: 'SourceChangedError',
      code: 'JOBD_SOURCE_CHANGED',
      retryable: true,
    });
    expect(await readdir(conv)).toEqual(['big']);
  });

  it('a cancel mid-run stops zstd (pid gone) and leaves neither the archive nor a temporary', async () => {
    const src = await bigTree('big');
    const ctx = recordingContext();
    const run = compressDirectory({ source_dir: src }, ctx, env);
    const pid = await (async () => {
      for (;;) {
        const hit = ctx.logs.find((l) => l.msg === 'zstd: started');
        if (hit) return hit.extra!.pid as number;
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    ctx.controller.abort(new Error('cancelled'));
    await expect(run).rejects.toMatchObject({ name: 'ToolAbortedError' });
    expect(await isAlive(pid)).toBe(false);
    expect(await readdir(conv)).toEqual(['big']);
  });

  it.each([
    ['GNU tar feeding zstd', 900 << 10, 'tar: started', 1],
    ['zstd reading the files itself', 3 << 19, 'zstd: started', 2], // the archive and the segments
  ])(
    'a SIGKILL mid-run (%s) leaves no archive in place; the re-run removes the temporaries and writes a valid archive',
    async (_how, size, started, temps) => {
      // zstd at level 19 on one thread takes seconds for these 1.8-3 MiB: killed once it has started,
      // the run is mid-way however fast the machine is.
      const src = await bigTree('big', 2, size);
      const input = { source_dir: src, level: 19, threads: 1 };
      const child = runCoreChild('compress', 'compressDirectory', input, env);
      await child.waitEvent((e) => e.log === started, started);
      const zstdPid = (child.events.find((e) => e.log === 'zstd: started')!.extra as { pid: number }).pid;
      child.proc.kill('SIGKILL');
      await child.exited;
      expect(child.events.some((e) => 'result' in e)).toBe(false);
      await allGone([zstdPid], 'zstd of the killed run');
      const names = await readdir(conv);
      expect(names).not.toContain('big.tar.zst');
      expect(names.filter((n) => n.includes('jobd-tmp'))).toHaveLength(temps);
      const res = await compressDirectory(input, recordingContext(), env);
      expect((await readdir(conv)).sort()).toEqual(['big', 'big.tar.zst']);
      execFileSync('zstd', ['-t', '-q', res.output_path]);
      expect(res.sha256).toBe(sha256sum(res.output_path));
    },
  );
});
