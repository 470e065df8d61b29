import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, readlink, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { extractArchive, THREAD_MIN_ENTRIES } from '../../src/jobs/data/lib/extract.js';
import {
  gzipOf,
  lyingZip,
  makeDataset,
  tarOf,
  zipBomb,
  zipOf,
  zstdOf,
  type FakeEntry,
} from '../fixtures/data/archives.js';
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
let upload: string;
let outside: string;
let env: { dataDirs: Record<string, string> };

beforeEach(async () => {
  base = await tempDir('extract');
  upload = join(base.dir, 'upload');
  outside = join(base.dir, 'outside');
  await mkdir(upload, { recursive: true });
  await mkdir(outside, { recursive: true });
  env = { dataDirs: { upload } };
});
afterEach(() => base.cleanup());

async function siblings(): Promise<string[]> {
  return (await readdir(upload)).sort();
}

const good: FakeEntry[] = [
  { name: 'data/', type: 'directory' },
  { name: 'data/a.txt', type: 'file', content: 'alpha\n' },
  { name: 'data/bin/tool.sh', type: 'file', content: '#!/bin/sh\n', mode: 0o755 },
  { name: 'data/latest', type: 'symlink', linkname: 'a.txt' },
  { name: 'data/up', type: 'symlink', linkname: '../data/bin' },
  { name: 'data/a-again.txt', type: 'link', linkname: 'data/a.txt' },
];

describe('file_extraction: well-formed archives', () => {
  for (const [fmt, wrap] of [
    ['tar', (b: Buffer) => b],
    ['tar.gz', gzipOf],
    ['tar.zst', zstdOf],
  ] as const) {
    it(`extracts ${fmt} (files, modes, symlinks, hard links) and reports entries and bytes`, async () => {
      await writeFile(join(upload, `in.${fmt}`), wrap(await tarOf(good)));
      const ctx = recordingContext();
      const res = await extractArchive(
        { zip_file: join(upload, `in.${fmt}`), extract_dir: join(upload, 'out') },
        ctx,
        env,
      );
      expect(res).toMatchObject({ format: fmt, entries: 6, bytes: 16 });
      const out = join(upload, 'out', 'data');
      expect(await readFile(join(out, 'a.txt'), 'utf8')).toBe('alpha\n');
      expect((await stat(join(out, 'bin/tool.sh'))).mode & 0o777).toBe(0o755);
      expect(await readlink(join(out, 'latest'))).toBe('a.txt');
      expect((await stat(join(out, 'a-again.txt'))).ino).toBe((await stat(join(out, 'a.txt'))).ino);
      expect(ctx.progressed.at(-1)!.percent).toBe(100);
      expect(await siblings()).toEqual([`in.${fmt}`, 'out']);
    });
  }

  it('extracts a zip with a symlink inside, and a real dataset round trip through tar', async () => {
    await writeFile(
      join(upload, 'in.zip'),
      await zipOf([
        { name: 'd/', directory: true },
        { name: 'd/x.txt', content: 'x'.repeat(1000) },
        { name: 'd/link', symlink: 'x.txt' },
      ]),
    );
    const res = await extractArchive(
      { archive: join(upload, 'in.zip'), extract_dir: join(upload, 'z') },
      recordingContext(),
      env,
    );
    expect(res).toMatchObject({ format: 'zip', entries: 3, bytes: 1000 });
    expect(await readFile(join(upload, 'z/d/link'), 'utf8')).toBe('x'.repeat(1000));

    const src = join(base.dir, 'src');
    const names = await makeDataset(src, 12, 2048);
    execFileSync('tar', ['-czf', join(upload, 'ds.tar.gz'), '-C', src, '.']);
    await extractArchive(
      { archive: join(upload, 'ds.tar.gz'), extract_dir: join(upload, 'ds') },
      recordingContext(),
      env,
    );
    for (const n of names) await expectSameFile(join(src, n), join(upload, 'ds', n));
  });

  it('a zip read in windows: entries across window edges, large entries streamed between small ones, stored and deflated, byte for byte', async () => {
    // 1 MiB windows: 300 entries of up to 9 KiB and two of 1.5 and 3 MiB cross several window edges.
    const entries = Array.from({ length: 300 }, (_, i) => ({
      name: `d${i % 3}/f${i}.bin`,
      content: i % 2 ? randomBytes(1000 + (i % 9) * 1000) : Buffer.from(`line ${i}\n`.repeat(200 + i)),
      stored: i % 5 === 0,
    }));
    entries.splice(100, 0, { name: 'big/a.bin', content: randomBytes(3 << 19), stored: false });
    entries.splice(200, 0, { name: 'big/b.bin', content: randomBytes(3 << 20), stored: true });
    await writeFile(join(upload, 'w.zip'), await zipOf(entries));
    const res = await extractArchive(
      { archive: join(upload, 'w.zip'), extract_dir: join(upload, 'w') },
      recordingContext(),
      env,
    );
    expect(res).toMatchObject({
      entries: 302,
      bytes: entries.reduce((n, e) => n + e.content.length, 0),
    });
    for (const e of entries) expect((await readFile(join(upload, 'w', e.name))).equals(e.content)).toBe(true);
  });

  it('a zip of many entries (small files created on a thread of their own): names written twice, a link to one of them, and a file used as a directory', async () => {
    const entries: Array<{ name: string; content: Buffer; stored?: boolean }> = Array.from(
      { length: THREAD_MIN_ENTRIES + 100 },
      (_, i) => ({ name: `d${i % 4}/f${i}.txt`, content: Buffer.from(`file ${i}\n`.repeat(1 + (i % 50))) }),
    );
    entries.push({ name: 'd1/f1.txt', content: Buffer.from('written again\n'), stored: true });
    entries.push({ name: 'big.bin', content: randomBytes(3 << 20) });
    await writeFile(
      join(upload, 'many.zip'),
      await zipOf([...entries, { name: 'd2/link', symlink: 'f2.txt' }]),
    );
    const res = await extractArchive(
      { archive: join(upload, 'many.zip'), extract_dir: join(upload, 'm') },
      recordingContext(),
      env,
    );
    expect(res.entries).toBe(entries.length + 1);
    const last = new Map(entries.map((e) => [e.name, e.content]));
    for (const [name, content] of last)
      expect((await readFile(join(upload, 'm', name))).equals(content)).toBe(true);
    expect(await readFile(join(upload, 'm/d2/link'), 'utf8')).toBe('file 2\n'.repeat(3));
    expect(await siblings()).toEqual(['m', 'many.zip']);

    // A file the thread created, then used as a directory: refused, nothing left in place.
    await writeFile(
      join(upload, 'bad.zip'),
      await zipOf([...entries.slice(0, THREAD_MIN_ENTRIES), { name: 'd3/f3.txt/x', content: 'x' }]),
    );
    await expect(
      extractArchive(
        { archive: join(upload, 'bad.zip'), extract_dir: join(upload, 'b') },
        recordingContext(),
        env,
      ),
    ).rejects.toMatchObject({
      name: 'ArchiveRefusedError',
      message: expect.stringContaining('is a file, not a directory'),
    });
    expect(await siblings()).toEqual(['bad.zip', 'm', 'many.zip']);
  });

  it('on_existing: replace swaps the whole tree, merge keeps other files, fail refuses, and replace refuses to delete its own archive', async () => {
    const arc = join(upload, 'a.tar');
    await writeFile(arc, await tarOf([{ name: 'new.txt', type: 'file', content: 'new' }]));
    const target = join(upload, 't');
    await mkdir(target);
    await writeFile(join(target, 'old.txt'), 'old');
    await extractArchive({ archive: arc, extract_dir: target }, recordingContext(), env);
    expect(await readdir(target)).toEqual(['new.txt']);
    await writeFile(join(target, 'keep.txt'), 'k');
    await extractArchive(
      { archive: arc, extract_dir: target, on_existing: 'merge' },
      recordingContext(),
      env,
    );
    expect((await readdir(target)).sort()).toEqual(['keep.txt', 'new.txt']);
    await expect(
      extractArchive({ archive: arc, extract_dir: target, on_existing: 'fail' }, recordingContext(), env),
    ).rejects.toThrow(/exists and is not empty/);
    const inner = join(target, 'inner.tar');
    await writeFile(inner, await tarOf([{ name: 'n.txt', type: 'file', content: 'n' }]));
    await expect(
      extractArchive({ archive: inner, extract_dir: target }, recordingContext(), env),
    ).rejects.toThrow(/holds the archive itself/);
    await extractArchive(
      { archive: inner, extract_dir: target, on_existing: 'merge' },
      recordingContext(),
      env,
    );
    expect((await readdir(target)).sort()).toEqual(['inner.tar', 'keep.txt', 'n.txt', 'new.txt']);
  });

  it('refuses an archive or a target outside the data dirs', async () => {
    await writeFile(join(outside, 'x.tar'), await tarOf(good));
    await expect(
      extractArchive(
        { zip_file: join(outside, 'x.tar'), extract_dir: join(upload, 'o') },
        recordingContext(),
        env,
      ),
    ).rejects.toMatchObject({
      name: 'PathNotAllowedError',
      message: expect.stringContaining('zip_file'),
    });
    await writeFile(join(upload, 'x.tar'), await tarOf(good));
    await expect(
      extractArchive(
        { zip_file: join(upload, 'x.tar'), extract_dir: join(outside, 'o') },
        recordingContext(),
        env,
      ),
    ).rejects.toMatchObject({
      name: 'PathNotAllowedError',
      message: expect.stringContaining('extract_dir'),
    });
  });
});

describe('file_extraction: hostile archives are refused with nothing written outside', () => {
  const hostileTar: Array<[string, FakeEntry[]]> = [
    ['an absolute path', [{ name: '/OUTSIDE/abs.txt', type: 'file', content: 'x' }]],
    ['a ../ path', [{ name: 'ok/../../outside/dotdot.txt', type: 'file', content: 'x' }]],
    ['a symlink out', [{ name: 'out', type: 'symlink', linkname: '../../outside' }]],
    ['an absolute symlink', [{ name: 'out', type: 'symlink', linkname: '/etc' }]],
    ['a hard link out', [{ name: 'hl', type: 'link', linkname: '../outside/victim.txt' }]],
    ['a hard link to an absolute path', [{ name: 'hl', type: 'link', linkname: '/etc/passwd' }]],
    [
      'a symlink, then a file written through it',
      [
        { name: 'sub/', type: 'directory' },
        { name: 'via', type: 'symlink', linkname: 'sub' },
        { name: 'via/x.txt', type: 'file', content: 'x' },
      ],
    ],
    [
      'a chain of symlinks that leads out',
      [
        { name: 'self', type: 'symlink', linkname: '.' },
        { name: 'up', type: 'symlink', linkname: 'self/..' },
      ],
    ],
    ['a FIFO', [{ name: 'pipe', type: 'fifo' }]],
    ['a device file', [{ name: 'null', type: 'character-device' }]],
  ];
  for (const [what, entries] of hostileTar) {
    it(`tar with ${what}`, async () => {
      await writeFile(join(outside, 'victim.txt'), 'untouched');
      const realEntries = entries.map((e) =>
        e.name.startsWith('/OUTSIDE') ? { ...e, name: join(outside, 'abs.txt') } : e,
      );
      await writeFile(join(upload, 'h.tar.gz'), gzipOf(await tarOf(realEntries)));
      const err = await failure(
        extractArchive(
          { archive: join(upload, 'h.tar.gz'), extract_dir: join(upload, 'x') },
          recordingContext(),
          env,
        ),
      );
      expect(err).toMatchObject({ name: 'ArchiveRefusedError', code: 'JOBD_DO_NOT_RETRY' });
      expect(await readdir(outside)).toEqual(['victim.txt']);
      expect(await readFile(join(outside, 'victim.txt'), 'utf8')).toBe('untouched');
      expect(await siblings()).toEqual(['h.tar.gz']);
    });
  }

  for (const [what, entries] of [
    ['an absolute path', [{ name: '/tmp/jobd-zip-abs.txt', content: 'x' }]],
    ['a ../ path', [{ name: '../outside/z.txt', content: 'x' }]],
    ['a symlink out', [{ name: 'out', symlink: '../outside' }]],
    [
      'a symlink, then a file written through it',
      [
        { name: 'd/', directory: true as const },
        { name: 'l', symlink: 'd' },
        { name: 'l/f.txt', content: 'x' },
      ],
    ],
  ] as const) {
    it(`zip with ${what}`, async () => {
      await writeFile(join(upload, 'h.zip'), await zipOf([...entries]));
      const err = await failure(
        extractArchive(
          { archive: join(upload, 'h.zip'), extract_dir: join(upload, 'x') },
          recordingContext(),
          env,
        ),
      );
      expect(err).toMatchObject({ name: 'ArchiveRefusedError', code: 'JOBD_DO_NOT_RETRY' });
      expect(await readdir(outside)).toEqual([]);
      expect(await siblings()).toEqual(['h.zip']);
      await expect(lstat('/tmp/jobd-zip-abs.txt')).rejects.toThrow();
    });
  }

  it('a zip bomb is stopped at max_bytes, counting bytes written', async () => {
    await writeFile(join(upload, 'bomb.zip'), await zipBomb(64));
    expect((await stat(join(upload, 'bomb.zip'))).size).toBeLessThan(1 << 20);
    const err = await failure(
      extractArchive(
        { archive: join(upload, 'bomb.zip'), extract_dir: join(upload, 'x'), max_bytes: 8 << 20 },
        recordingContext(),
        env,
      ),
    );
    expect(err.message).toContain('max_bytes');
    expect(await siblings()).toEqual(['bomb.zip']);
  });

  it('a zip whose headers under-state the size is refused (actual bytes, not the claim)', async () => {
    await writeFile(join(upload, 'lie.zip'), await lyingZip(32));
    const err = await failure(
      extractArchive(
        { archive: join(upload, 'lie.zip'), extract_dir: join(upload, 'x') },
        recordingContext(),
        env,
      ),
    );
    expect(err).toMatchObject({ name: 'ArchiveRefusedError' });
    expect(await siblings()).toEqual(['lie.zip']);
  });

  it('a zip entry whose bytes do not match its CRC-32 is refused', async () => {
    const content = Buffer.from('checked bytes\n'.repeat(40));
    const zip = await zipOf([{ name: 'c.txt', content }]);
    const good = Buffer.alloc(4);
    good.writeUInt32LE(crc32(content));
    const bad = Buffer.alloc(4);
    bad.writeUInt32LE((crc32(content) ^ 1) >>> 0);
    // The CRC-32 in the local header and in the central directory.
    let at = zip.indexOf(good);
    for (; at >= 0; at = zip.indexOf(good, at + 4)) bad.copy(zip, at);
    await writeFile(join(upload, 'crc.zip'), zip);
    const err = await failure(
      extractArchive(
        { archive: join(upload, 'crc.zip'), extract_dir: join(upload, 'x') },
        recordingContext(),
        env,
      ),
    );
    expect(err).toMatchObject({ name: 'ArchiveRefusedError', message: expect.stringContaining('CRC-32') });
    expect(await siblings()).toEqual(['crc.zip']);
  });

  it('a tar.gz bomb and too many entries are stopped at the limits', async () => {
    await writeFile(
      join(upload, 'b.tar.gz'),
      gzipOf(await tarOf([{ name: 'z', type: 'file', content: Buffer.alloc(40 << 20) }])),
    );
    await expect(
      extractArchive(
        { archive: join(upload, 'b.tar.gz'), extract_dir: join(upload, 'x'), max_bytes: 4 << 20 },
        recordingContext(),
        env,
      ),
    ).rejects.toThrow(/max_bytes/);
    const many = Array.from({ length: 50 }, (_, i): FakeEntry => ({
      name: `f${i}`,
      type: 'file',
      content: 'x',
    }));
    await writeFile(join(upload, 'm.tar'), await tarOf(many));
    await expect(
      extractArchive(
        { archive: join(upload, 'm.tar'), extract_dir: join(upload, 'x'), max_entries: 10 },
        recordingContext(),
        env,
      ),
    ).rejects.toThrow(/max_entries/);
    // The settings' limits are a ceiling a job cannot raise.
    const ceiling = { ...env, extract: { maxBytes: 1 << 20, maxEntries: 20 } };
    for (const [field, value, key] of [
      ['max_entries', 21, 'maxEntries'],
      ['max_bytes', 2 << 20, 'maxBytes'],
    ] as const) {
      await expect(
        extractArchive(
          { archive: join(upload, 'm.tar'), extract_dir: join(upload, 'x'), [field]: value },
          recordingContext(),
          ceiling,
        ),
      ).rejects.toThrow(
        new RegExp(
          `^${field} = ${value} is not allowed: must be at most \\d+ \\(the settings' data\\.extract\\.${key}\\)`,
        ),
      );
    }
    await expect(
      extractArchive(
        { archive: join(upload, 'm.tar'), extract_dir: join(upload, 'x'), max_entries: 30 },
        recordingContext(),
        { ...env, extract: { maxEntries: 40 } },
      ),
    ).rejects.toThrow(/more than 30 entries \(max_entries\)/);
    expect(await siblings()).toEqual(['b.tar.gz', 'm.tar']);
  });
});

describe('file_extraction: cancel and crash', () => {
  async function bigTarZst(): Promise<string> {
    const entries: FakeEntry[] = Array.from({ length: 40 }, (_, i) => ({
      name: `f${i}.bin`,
      type: 'file',
      content: randomBytes(3 << 20),
    }));
    const path = join(upload, 'big.tar.zst');
    await writeFile(path, zstdOf(await tarOf(entries)));
    return path;
  }

  it('a cancel mid-run stops zstd (its pid is gone) and leaves nothing in place', async () => {
    const arc = await bigTarZst();
    const ctx = recordingContext();
    const done = extractArchive({ archive: arc, extract_dir: join(upload, 'x') }, ctx, env);
    const started = await (async () => {
      for (;;) {
        const hit = ctx.logs.find((l) => l.msg === 'zstd: started');
        if (hit) return hit.extra!.pid as number;
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    ctx.controller.abort(new Error('cancelled'));
    await expect(done).rejects.toMatchObject({ name: 'ToolAbortedError' });
    expect(await isAlive(started)).toBe(false);
    expect(await siblings()).toEqual(['big.tar.zst']);
  });

  it('a cancel from a timer stops a zip of many small files mid-run (the loop gets turns between writes)', async () => {
    // One directory: creating directories awaits, so only the file writes would give the loop a turn.
    const entries = Array.from({ length: 3000 }, (_, i) => ({
      name: `f${i}.txt`,
      content: `file ${i}\n`,
      stored: true, // deflating 3,000 entries one by one in the thread pool takes seconds
    }));
    await writeFile(join(upload, 'many.zip'), await zipOf(entries));
    const ctx = recordingContext();
    let armed = false;
    // The abort comes from a timer armed at the first entry's progress: it fires only if the extraction
    // gives the event loop a turn while it writes.
    const progress = ctx.progress;
    ctx.progress = (percent, message) => {
      progress(percent, message);
      if (!armed && message && /^[1-9]\d*\/\d+ entries$/.test(message)) {
        armed = true;
        setTimeout(() => ctx.controller.abort(new Error('cancelled')), 0);
      }
    };
    await expect(
      extractArchive({ archive: join(upload, 'many.zip'), extract_dir: join(upload, 'x') }, ctx, env),
    ).rejects.toMatchObject({ code: 'JOBD_ABORTED' });
    expect(armed).toBe(true);
    expect(await siblings()).toEqual(['many.zip']);
  });

  it('a SIGKILL of the extracting process leaves no partial output in place; the re-run cleans up and completes', async () => {
    const arc = await bigTarZst();
    const target = join(upload, 'x');
    const child = runCoreChild('extract', 'extractArchive', { archive: arc, extract_dir: target }, env);
    await child.waitEvent(
      (e) => typeof e.progress === 'number' && (e.progress as number) > 0,
      'extraction under way',
    );
    const zstdPid = child.events.find((e) => e.log === 'zstd: started')!.extra as { pid: number };
    child.proc.kill('SIGKILL');
    await child.exited;
    expect(child.events.some((e) => 'result' in e)).toBe(false);
    await expect(stat(target)).rejects.toThrow(/ENOENT/);
    const left = (await siblings()).filter((n) => n.includes('jobd-tmp'));
    expect(left).toHaveLength(1);
    await allGone([zstdPid.pid], 'zstd of the killed run');

    const ctx = recordingContext();
    const res = await extractArchive({ archive: arc, extract_dir: target }, ctx, env);
    expect(res.entries).toBe(40);
    expect(res.bytes).toBe(40 * (3 << 20));
    expect(await siblings()).toEqual(['big.tar.zst', 'x']);
    expect(ctx.logs.some((l) => l.msg.includes('crashed run'))).toBe(true);
  });
});
