/**
 * Dataset cores against the native tools, the same files side by side in one run. Prints ONE JSON
 * document on stdout (progress goes to stderr).
 *
 *   npm run bench:data                    full size (1 GiB tree, 10,000-file zip, 2 GiB hash, ...)
 *   npm run bench:data -- --scale=0.25    every size times 0.25 (BENCH_SCALE works too)
 *   npm run bench:data -- --scale=0.25 --small-scale=1   big files quartered, the 10,000 small files kept
 *   npm run bench:data -- --rounds=5      native and jobd alternately 5 times each, the order swapped
 *                                         every round (default 3; rsync at least 5: a local copy's time
 *                                         swings with the disk)
 *   npm run bench:data -- --only=compress   only some parts, comma-separated: extract, zip, compress,
 *                                         rsync, sha256, backup (default: all)
 *   BENCH_DIR=/somewhere npm run bench:data   where the files go (default: the temp dir)
 *   BENCH_BUILD=../other npm run bench:data   measure another checkout's cores (its src/, through tsx
 *                                         like this one's): run it alternately with this checkout's to
 *                                         compare a before and an after
 *   BENCH_BASE=../other npm run bench:data    the compression and the extractions also with another
 *                                         checkout's core, as a third side in the same rounds (base_s,
 *                                         base_ratio): a before and an after under the same load
 *
 * Each figure: the median of jobd's seconds and of the native tool's over the rounds (every round is
 * listed too), and ratio = native / jobd (1.0 = as fast as the native tool; the target is ≥ 0.9).
 * cpu_ratio compares the CPU seconds (user + system, the process and the programs it ran) the same
 * way: on a machine shared with other work, wall time swings with the load, CPU time much less.
 * compress_tar_zst_durable is context, not a target: the same compression with the native archive
 * flushed to disk as jobd's is (see there).
 * The backup figure is a second backup of an unchanged
 * 10,000-file dataset: its seconds and the bytes it added (target < 1 MiB).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, rename, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type * as BackupCore from '../src/jobs/data/lib/backup.js';
import type * as CompressCore from '../src/jobs/data/lib/compress.js';
import type * as ExtractCore from '../src/jobs/data/lib/extract.js';
import type * as RsyncCore from '../src/jobs/data/lib/rsync.js';
import type * as HashLib from '../src/jobs/lib/hash.js';
import type { CoreContext } from '../src/jobs/lib/context.js';

// BENCH_BUILD: the checkout whose cores are measured (its src/, run the same way as this one's), so a
// before and an after can be compared on the same machine in the same sitting.
const BUILD = resolve(import.meta.dirname, '..', process.env.BENCH_BUILD ?? '.');
const core = <T>(rel: string): Promise<T> => import(join(BUILD, 'src', rel)) as Promise<T>;
const { createBackup } = await core<typeof BackupCore>('jobs/data/lib/backup.ts');
const { compressDirectory } = await core<typeof CompressCore>('jobs/data/lib/compress.ts');
const { extractArchive } = await core<typeof ExtractCore>('jobs/data/lib/extract.ts');
const { rsyncTransfer } = await core<typeof RsyncCore>('jobs/data/lib/rsync.ts');
const { sha256File } = await core<typeof HashLib>('jobs/lib/hash.ts');
const BASE = process.env.BENCH_BASE ? resolve(import.meta.dirname, '..', process.env.BENCH_BASE) : null;
const baseCompress = BASE
  ? ((await import(join(BASE, 'src/jobs/data/lib/compress.ts'))) as typeof CompressCore).compressDirectory
  : null;
const baseExtract = BASE
  ? ((await import(join(BASE, 'src/jobs/data/lib/extract.ts'))) as typeof ExtractCore).extractArchive
  : null;

const arg = process.argv.find((a) => a.startsWith('--scale='));
const scale = Number(arg ? arg.slice('--scale='.length) : (process.env.BENCH_SCALE ?? 1));
if (!(scale > 0 && scale <= 4)) {
  process.stderr.write(`--scale must be a number in (0, 4]; got ${arg ?? process.env.BENCH_SCALE}\n`);
  process.exit(2);
}
const smallArg = process.argv.find((a) => a.startsWith('--small-scale='));
const smallScale = smallArg ? Number(smallArg.slice('--small-scale='.length)) : scale;
if (!(smallScale > 0 && smallScale <= 4)) {
  process.stderr.write(`--small-scale must be a number in (0, 4]; got ${smallArg}\n`);
  process.exit(2);
}
const roundsArg = process.argv.find((a) => a.startsWith('--rounds='));
const rounds = roundsArg ? Number(roundsArg.slice('--rounds='.length)) : 3;
if (!(Number.isInteger(rounds) && rounds >= 1 && rounds <= 50)) {
  process.stderr.write(`--rounds must be an integer in [1, 50]; got ${roundsArg}\n`);
  process.exit(2);
}
const PARTS = ['extract', 'zip', 'compress', 'rsync', 'sha256', 'backup'] as const;
const onlyArg = process.argv.find((a) => a.startsWith('--only='));
const only = new Set(onlyArg ? onlyArg.slice('--only='.length).split(',') : PARTS);
const unknownPart = [...only].find((p) => !(PARTS as readonly string[]).includes(p));
if (unknownPart !== undefined || only.size === 0) {
  process.stderr.write(`--only takes a comma-separated list of ${PARTS.join(', ')}; got ${onlyArg}\n`);
  process.exit(2);
}
const part = (p: (typeof PARTS)[number]): boolean => only.has(p);
const MiB = 1 << 20;
const TREE_FILES = Math.max(4, Math.round(64 * scale)); // 16 MiB each: 1 GiB at scale 1
const SMALL_FILES = Math.max(500, Math.round(10_000 * smallScale));
const HASH_BYTES = Math.max(64 * MiB, Math.round(2048 * scale) * MiB);

const log = (msg: string): void => void process.stderr.write(`[bench:data] ${msg}\n`);
const round = (n: number, d = 3): number => Math.round(n * 10 ** d) / 10 ** d;
const ctx: CoreContext = { signal: new AbortController().signal, progress: () => {}, log: () => {} };

/**
 * A native tool, started the way jobd starts its programs: in a session of its own (`detached`, setsid).
 * Where the kernel groups scheduling by session (autogroup, `kernel.sched_autogroup_enabled=1`, the
 * default on many distributions outside systemd services), each session gets a CPU share of its own,
 * so a plain child and a detached one run at different speeds: on a loaded machine the same local rsync
 * took 501 ms plain and 835 ms detached (medians of 16 alternating rounds).
 */
function run(cmd: string, args: string[], cwd?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let err = '';
    p.stderr.on('data', (c: Buffer) => (err += c.toString()));
    p.on('error', reject);
    p.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err}`)),
    );
  });
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  return (await measured(fn)).s;
}

/** Clock ticks of the programs this process ran and reaped (cutime + cstime of /proc/self/stat). */
function childTicks(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[13]) + Number(fields[14]); // fields 16 and 17 of proc(5), counted after the name
}
const TICK_S = 0.01; // USER_HZ is 100 on Linux

/** Wall seconds and CPU seconds (this process's threads and every program it ran, reaped). */
async function measured(fn: () => Promise<unknown>): Promise<{ s: number; cpu: number }> {
  const c0 = process.cpuUsage();
  const k0 = childTicks();
  const t = performance.now();
  await fn();
  const s = (performance.now() - t) / 1000;
  const c = process.cpuUsage(c0);
  return { s, cpu: (c.user + c.system) / 1e6 + (childTicks() - k0) * TICK_S };
}

function median(xs: number[]): number {
  const v = [...xs].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

/** Semi-compressible content (half random, half text), like real detector data after headers. */
function fileContent(size: number): Buffer {
  const b = Buffer.alloc(size);
  const text = Buffer.from('frame 000123 exposure=0.100 gain=1.000 status=ok\n'.repeat(1400));
  for (let off = 0; off < size; off += 128 * 1024) {
    const rnd = Math.min(64 * 1024, size - off);
    randomBytes(rnd).copy(b, off);
    const rest = Math.min(64 * 1024, size - off - rnd);
    if (rest > 0) text.copy(b, off + rnd, 0, rest);
  }
  return b;
}

interface Pair {
  what: string;
  bytes?: number;
  files?: number;
  jobd_s: number;
  native: string;
  native_s: number;
  ratio: number;
  jobd_cpu_s: number;
  native_cpu_s: number;
  cpu_ratio: number;
  /** With BENCH_BASE: the base checkout's core, the third side of the same rounds. */
  base_s?: number;
  base_ratio?: number;
  base_cpu_s?: number;
  rounds: {
    jobd_s: number[];
    native_s: number[];
    base_s?: number[];
    jobd_cpu_s: number[];
    native_cpu_s: number[];
    base_cpu_s?: number[];
  };
}

async function pair(
  what: string,
  native: string,
  ours: () => Promise<unknown>,
  theirs: () => Promise<unknown>,
  reset: () => Promise<void>,
  size: { bytes?: number; files?: number },
  n = rounds,
  base?: () => Promise<unknown>,
): Promise<Pair> {
  // Native and jobd alternately, the order swapped every round (native first in even rounds, jobd first
  // in odd ones): caches warm for both, a load that comes and goes falls on both sides, and neither side
  // always meets the other's disk write-out. Medians, so one disturbed round does not make the figure.
  // With a base, the three sides take turns at going first.
  const j: Array<{ s: number; cpu: number }> = [];
  const t: Array<{ s: number; cpu: number }> = [];
  const b: Array<{ s: number; cpu: number }> = [];
  const order = base
    ? (i: number) => (['native', 'jobd', 'base'] as const).map((_, k, a) => a[(i + k) % 3]!)
    : (i: number) => (i % 2 ? (['jobd', 'native'] as const) : (['native', 'jobd'] as const));
  for (let i = 0; i < n; i++) {
    for (const side of order(i)) {
      if (side === 'jobd') j.push(await measured(ours));
      else if (side === 'base') b.push(await measured(base!));
      else t.push(await measured(theirs));
      await reset();
    }
  }
  const [jobd_s, native_s] = [median(j.map((r) => r.s)), median(t.map((r) => r.s))];
  const [jobdCpu, nativeCpu] = [median(j.map((r) => r.cpu)), median(t.map((r) => r.cpu))];
  const out: Pair = {
    what,
    ...size,
    jobd_s: round(jobd_s),
    native,
    native_s: round(native_s),
    ratio: round(native_s / jobd_s, 2),
    jobd_cpu_s: round(jobdCpu, 2),
    native_cpu_s: round(nativeCpu, 2),
    cpu_ratio: round(nativeCpu / jobdCpu, 2),
    rounds: {
      jobd_s: j.map((r) => round(r.s)),
      native_s: t.map((r) => round(r.s)),
      jobd_cpu_s: j.map((r) => round(r.cpu, 2)),
      native_cpu_s: t.map((r) => round(r.cpu, 2)),
    },
  };
  if (b.length) {
    const base_s = median(b.map((r) => r.s));
    Object.assign(out, {
      base_s: round(base_s),
      base_ratio: round(native_s / base_s, 2),
      base_cpu_s: round(median(b.map((r) => r.cpu)), 2),
    });
    out.rounds.base_s = b.map((r) => round(r.s));
    out.rounds.base_cpu_s = b.map((r) => round(r.cpu, 2));
  }
  log(JSON.stringify(out));
  return out;
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(process.env.BENCH_DIR ?? tmpdir(), 'jobd-bench-data-'));
  const env = { dataDirs: [root] };
  const out: Record<string, unknown> = {
    bench: 'jobd dataset cores',
    node: process.version,
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? null,
    build: BUILD,
    ...(BASE ? { base: BASE } : {}),
    loadAvgAtStart: loadavg().map((v) => round(v, 2)),
    scale,
    smallScale,
    rounds,
    only: [...only],
  };
  const results: Record<string, unknown> = {};
  try {
    const tree = join(root, 'tree');
    if (part('extract') || part('compress') || part('rsync')) {
      log(`making a tree of ${TREE_FILES} files of 16 MiB`);
      await mkdir(tree);
      for (let i = 0; i < TREE_FILES; i++)
        await writeFile(join(tree, `frame_${String(i).padStart(4, '0')}.bin`), fileContent(16 * MiB));
    }
    const treeBytes = TREE_FILES * 16 * MiB;
    const x = (n: string): string => join(root, `x-${n}`);

    // Extraction of a tar.gz.
    const tgz = join(root, 'tree.tar.gz');
    if (part('extract')) await run('tar', ['-czf', tgz, '-C', root, 'tree']);
    if (part('extract'))
      results.extract_tar_gz = await pair(
        'extract tar.gz',
        'tar -xzf',
        () => extractArchive({ archive: tgz, extract_dir: x('jobd') }, ctx, env),
        async () => {
          await mkdir(x('native'));
          await run('tar', ['-xzf', tgz, '-C', x('native')]);
        },
        async () => {
          await rm(x('jobd'), { recursive: true, force: true });
          await rm(x('native'), { recursive: true, force: true });
        },
        { bytes: treeBytes, files: TREE_FILES },
        rounds,
        baseExtract ? () => baseExtract({ archive: tgz, extract_dir: x('jobd') }, ctx, env) : undefined,
      );
    await rm(tgz, { force: true });

    // Extraction of a zip of many small files.
    const small = join(root, 'small');
    const smallFiles = part('zip') || part('backup') ? SMALL_FILES : 0;
    if (smallFiles) log(`making ${smallFiles} small files`);
    for (let i = 0; i < smallFiles; i++) {
      if (i % 500 === 0) await mkdir(join(small, `d${i / 500}`), { recursive: true });
      await writeFile(
        join(small, `d${Math.floor(i / 500)}`, `f${i}.txt`),
        fileContent(1024 + (i % 7) * 1024),
      );
    }
    const zip = join(root, 'small.zip');
    if (part('zip')) await run('zip', ['-q', '-r', zip, 'small'], root);
    // The same files all in one directory: there jobd's two threads cannot each take directories of
    // their own (never two creations at once in one directory), so only the job's thread reading and
    // inflating overlaps with the other creating.
    const flatZip = join(root, 'flat.zip');
    if (part('zip')) {
      await mkdir(join(root, 'flat'));
      for (let i = 0; i < smallFiles; i++)
        await rename(join(small, `d${Math.floor(i / 500)}`, `f${i}.txt`), join(root, 'flat', `f${i}.txt`));
      await run('zip', ['-q', '-r', flatZip, 'flat'], root);
      for (let i = 0; i < smallFiles; i++)
        await rename(join(root, 'flat', `f${i}.txt`), join(small, `d${Math.floor(i / 500)}`, `f${i}.txt`));
    }
    // Each side's output is moved aside between sides and deleted only after the last round. ext4 does
    // not hand out an inode deleted in the last minute or more (several minutes while its inode-table
    // block is dirty) when it runs without a journal; every new file then skips past the freed inodes
    // of the outputs just deleted (`recently_deleted` in perf, kernel CPU in whichever side comes
    // next), and each round deleting 20,000 more made every later creation slower: unzip's 10,000
    // files took 6, 14 and 28 s in three runs, each after the previous output was deleted, and
    // 1.4–1.6 s with nothing deleted (load 12–14). The order of the sides still alternates.
    const aside = join(root, 'aside');
    let asideN = 0;
    const moveAside = async (dir: string): Promise<void> => {
      await mkdir(aside, { recursive: true });
      await rename(dir, join(aside, String(asideN++))).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    };
    const zipCases = [
      ['extract_zip_small_files', 'extract zip of small files', zip],
      ['extract_zip_one_directory', 'extract zip of small files, all in one directory', flatZip],
    ] as const;
    for (const [key, what, archive] of part('zip') ? zipCases : [])
      results[key] = await pair(
        what,
        'unzip -q',
        () => extractArchive({ archive, extract_dir: x('jobd') }, ctx, env),
        () => run('unzip', ['-q', archive, '-d', x('native')]),
        async () => {
          await moveAside(x('jobd'));
          await moveAside(x('native'));
        },
        { files: SMALL_FILES },
        rounds,
        baseExtract ? () => baseExtract({ archive, extract_dir: x('jobd') }, ctx, env) : undefined,
      );
    await rm(zip, { force: true });
    await rm(flatZip, { force: true });
    await rm(aside, { recursive: true, force: true });

    // Compression to tar.zst (level 3, every core, both sides).
    const zOut = (n: string): string => join(root, `tree-${n}.tar.zst`);
    if (part('compress'))
      results.compress_tar_zst = await pair(
        'compress to tar.zst',
        'tar -I "zstd -T0 -3" -cf',
        () => compressDirectory({ source_dir: tree, output_path: zOut('jobd') }, ctx, env),
        () => run('tar', ['-I', 'zstd -T0 -3', '-cf', zOut('native'), '-C', root, 'tree']),
        async () => {
          await rm(zOut('jobd'), { force: true });
          await rm(zOut('native'), { force: true });
        },
        { bytes: treeBytes },
        rounds,
        baseCompress
          ? () => baseCompress({ source_dir: tree, output_path: zOut('jobd') }, ctx, env)
          : undefined,
      );
    // For context, not the target: the native command leaves its archive dirty in the page cache (this
    // bench deletes it before it is ever written out), while jobd's is on disk before it is renamed
    // into place. Here the native archive is flushed too (`sync -d`, fdatasync), so the figure shows
    // what that promise costs.
    if (part('compress'))
      results.compress_tar_zst_durable = await pair(
        'compress to tar.zst, the native archive flushed to disk too',
        'tar -I "zstd -T0 -3" -cf, then sync -d',
        () => compressDirectory({ source_dir: tree, output_path: zOut('jobd') }, ctx, env),
        async () => {
          await run('tar', ['-I', 'zstd -T0 -3', '-cf', zOut('native'), '-C', root, 'tree']);
          await run('sync', ['-d', zOut('native')]);
        },
        async () => {
          await rm(zOut('jobd'), { force: true });
          await rm(zOut('native'), { force: true });
        },
        { bytes: treeBytes },
      );

    // rsync_transfer against bare rsync, local to local, same options (archive, partial).
    const r = (n: string): string => join(root, `rsync-${n}`);
    if (part('rsync'))
      results.rsync = await pair(
        'rsync_transfer',
        'rsync -a --partial',
        () => rsyncTransfer({ source: `${tree}/`, destination: r('jobd') }, ctx, env),
        () => run('rsync', ['-a', '--partial', `${tree}/`, r('native')]),
        async () => {
          await rm(r('jobd'), { recursive: true, force: true });
          await rm(r('native'), { recursive: true, force: true });
        },
        { bytes: treeBytes, files: TREE_FILES },
        Math.max(5, rounds),
      );
    await rm(tree, { recursive: true, force: true });

    // sha256 of one big file.
    if (part('sha256')) {
      const big = join(root, 'big.bin');
      log(`making a ${HASH_BYTES / MiB} MiB file`);
      const chunk = fileContent(64 * MiB);
      await writeFile(big, '');
      for (let done = 0; done < HASH_BYTES; done += chunk.length) {
        await appendFile(big, chunk.subarray(0, Math.min(chunk.length, HASH_BYTES - done)));
      }
      results.sha256 = await pair(
        'sha256',
        'sha256sum',
        () => sha256File(big),
        () => run('sha256sum', [big]),
        async () => {},
        { bytes: (await stat(big)).size },
      );
      await rm(big);
    }

    // A backup of an unchanged many-file dataset.
    let second: Awaited<ReturnType<typeof createBackup>> | undefined;
    if (part('backup')) {
      const backups = join(root, 'backups');
      const first = await timed(() => createBackup({ source_dir: small, backup_dir: backups }, ctx, env));
      const secondS = await timed(async () => {
        second = await createBackup({ source_dir: small, backup_dir: backups }, ctx, env);
      });
      results.backup_unchanged = {
        what: 'second backup of an unchanged dataset',
        files: second!.files,
        first_backup_s: round(first),
        seconds: round(secondS),
        new_bytes: second!.new_bytes,
        new_files: second!.new_files,
        hashed_files: second!.hashed_files,
      };
      log(JSON.stringify(results.backup_unchanged));
    }

    const ratios = Object.values(results)
      .filter((v): v is Pair => typeof (v as Pair).ratio === 'number')
      .map((v) => ({ what: v.what, ratio: v.ratio }));
    out.results = results;
    out.targets = {
      ratio_min: 0.9,
      below_target: ratios.filter((v) => v.ratio < 0.9).map((v) => v.what),
      backup_new_bytes_max: MiB,
      backup_met: second ? second.new_bytes < MiB : null,
    };
  } finally {
    out.loadAvgAtEnd = loadavg().map((v) => round(v, 2));
    await rm(root, { recursive: true, force: true });
  }
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

await main();
