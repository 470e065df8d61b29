/**
 * data_compression: packs a directory into tar.zst (default), tar.gz or tar.lz4, streaming: tar-stream →
 * compressor → a temporary sibling of the output, renamed into place when complete, with its sha256.
 * zstd and lz4 are Debian's programs behind the toolkit (`zstd -T<threads> -<level>` uses every core);
 * gzip is Node's zlib (one thread). The legacy `compression_type: "lz4"` is honoured: it makes a real
 * lz4 frame (`.tar.lz4`).
 */
import { createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { z } from 'zod';
import { lazySchema } from '../../lazyZod.js';
import { cleanStaleTemps, fsyncDir, tempSibling } from '../../lib/atomic.js';
import type { CoreContext } from '../../lib/context.js';
import { asAbort, DataInputError } from '../../lib/errors.js';
import { HashingStream, throttle } from '../../lib/hash.js';
import { confine, recheck } from '../../lib/paths.js';
import { LZ4, ZSTD } from '../../lib/toolTable.js';
import type { DataEnv } from './env.js';
import { hashAndSyncWhileWritten } from './followFile.js';
import { listTree, packTree } from './tarPack.js';
import { tarIntoCompressor } from './tarProgram.js';
import { framesPay, packFramesIntoZstd } from './zstdFrames.js';

const TYPES = {
  zstd: 'tar.zst',
  'tar.zst': 'tar.zst',
  gzip: 'tar.gz',
  'tar.gz': 'tar.gz',
  lz4: 'tar.lz4',
  'tar.lz4': 'tar.lz4',
} as const;
type Container = (typeof TYPES)[keyof typeof TYPES];
const LEVELS: Record<Container, { min: number; max: number; dflt: number }> = {
  'tar.zst': { min: 1, max: 19, dflt: 3 },
  'tar.gz': { min: 1, max: 9, dflt: 6 },
  'tar.lz4': { min: 1, max: 12, dflt: 1 },
};

export const compressInput = lazySchema((z) =>
  z.object({
    source_dir: z.string().describe('the directory to pack'),
    output_path: z
      .string()
      .optional()
      .describe('the archive to write (default: <source_dir>.tar.zst beside it)'),
    compression_type: z
      .enum(['zstd', 'tar.zst', 'gzip', 'tar.gz', 'lz4', 'tar.lz4'])
      .default('zstd')
      .describe('tar.zst (default), tar.gz, or tar.lz4 (the legacy default "lz4")'),
    level: z.number().int().min(1).max(19).optional().describe('zstd 1-19 (3), gzip 1-9 (6), lz4 1-12 (1)'),
    threads: z
      .number()
      .int()
      .min(0)
      .max(256)
      .optional()
      .describe('zstd worker threads; 0 = one per core (default)'),
  }),
);
export type CompressInput = z.input<ReturnType<typeof compressInput>>;
/** The input as its schema parsed it (defaults applied): what the job type hands the core. */
export type CompressOptions = z.output<ReturnType<typeof compressInput>>;

export interface CompressResult {
  output_path: string;
  format: Container;
  files: number;
  input_bytes: number;
  output_bytes: number;
  /** output_bytes / input_bytes. */
  ratio: number;
  sha256: string;
}

/** Validates its input itself (a call outside a job); a job type calls compressDirectoryParsed. */
export async function compressDirectory(
  input: CompressInput,
  ctx: CoreContext,
  env: DataEnv,
): Promise<CompressResult> {
  return compressDirectoryParsed(compressInput().parse(input), ctx, env);
}

/** compressDirectory for an input its job type's schema parsed (the daemon or the handler did). */
export async function compressDirectoryParsed(
  opts: CompressOptions,
  ctx: CoreContext,
  env: DataEnv,
): Promise<CompressResult> {
  const format = TYPES[opts.compression_type];
  const lv = LEVELS[format];
  const level = opts.level ?? lv.dflt;
  if (level < lv.min || level > lv.max) {
    throw new DataInputError(`level: ${level} is not allowed for ${format}: must be ${lv.min} to ${lv.max}`);
  }
  const source = await confine(opts.source_dir, env.dataDirs, {
    field: 'source_dir',
    mustExist: true,
    kind: 'dir',
  });
  const outPath = opts.output_path ?? `${opts.source_dir.replace(/\/+$/, '')}.${format}`;
  const output = await confine(outPath, env.dataDirs, { field: 'output_path', forWrite: true });
  if (output.real.startsWith(`${source.real}/`)) {
    throw new DataInputError(`output_path: "${outPath}" is inside source_dir; the archive would pack itself`);
  }
  await mkdir(dirname(output.real), { recursive: true });
  const stale = await cleanStaleTemps(output.real);
  if (stale.length) ctx.log("removed a crashed run's temporary archive", { paths: stale });

  const entries = await listTree(source.real, ctx);
  const total = entries.reduce((a, e) => a + (e.type === 'file' ? e.size : 0), 0);
  const files = entries.filter((e) => e.type === 'file').length;
  let packed = 0;
  const report = throttle(250, () =>
    ctx.progress(total ? (packed / total) * 99 : 50, `${packed} of ${total} bytes packed`),
  );
  const tmp = tempSibling(output.real);
  let sha256: string;
  try {
    if (format === 'tar.gz') {
      // zlib is one thread in this process, so the tar stream is made here too (tar-stream).
      const { pack, done: packed$ } = packTree(
        source.real,
        entries,
        (n) => ((packed = n), report()),
        ctx.signal,
      );
      const hasher = new HashingStream();
      await Promise.all([
        pipeline(
          pack as unknown as NodeJS.ReadableStream,
          createGzip({ level, chunkSize: 1 << 18 }),
          hasher,
          createWriteStream(tmp, { flags: 'wx', flush: true }),
          { signal: ctx.signal },
        ),
        packed$,
      ]);
      sha256 = hasher.digest();
    } else {
      // The compressor writes the file itself (opened here, O_EXCL); the sha256 is read from the page
      // cache as the file grows, and the file is flushed as it goes. A tree of big files goes to zstd
      // as frames it reads itself (zstdFrames); otherwise GNU tar packs and feeds the compressor over
      // one pipe, as `tar -I zstd` does, the data never passing through this process.
      const fh = await open(tmp, 'wx+');
      try {
        const zstdArgs = [`-T${opts.threads || availableParallelism()}`, `-${level}`, '-q', '-c'];
        const onBytes = (n: number): void => ((packed = Math.min(total, n)), report());
        // The hash's last reads and the last flush start when the compressor exits (or the packing
        // fails), beside the checks that follow its exit; the rename waits for all of them.
        let exited = (): void => {};
        const exit = new Promise<void>((resolve) => (exited = resolve));
        const packing =
          format === 'tar.zst' && framesPay(entries)
            ? packFramesIntoZstd(
                source.real,
                entries,
                zstdArgs,
                fh.fd,
                `${tmp}.segments`,
                onBytes,
                ctx,
                env.killGraceMs,
                exited,
              )
            : tarIntoCompressor(
                source.real,
                entries,
                format === 'tar.zst'
                  ? { tool: ZSTD, args: zstdArgs }
                  : { tool: LZ4, args: [`-${level}`, '-q', '-c'] },
                fh.fd,
                onBytes,
                ctx,
                env.killGraceMs,
              );
        const [followed, packedRes] = await Promise.allSettled([
          hashAndSyncWhileWritten(fh, Promise.race([exit, packing])),
          packing,
        ]);
        // The packing's error first: it says why (a changed source, a failed tool); the follower's
        // is then only that its writer failed.
        if (packedRes.status === 'rejected') throw packedRes.reason;
        if (followed.status === 'rejected') throw followed.reason;
        ({ sha256 } = followed.value);
      } finally {
        await fh.close();
      }
    }
    await recheck(output, env.dataDirs);
    await rename(tmp, output.real);
    await fsyncDir(dirname(output.real));
  } catch (err) {
    await rm(tmp, { force: true });
    throw asAbort(err, ctx.signal, 'data_compression');
  }
  const outputBytes = (await stat(output.real)).size;
  ctx.progress(100, `${format}: ${total} → ${outputBytes} bytes`);
  return {
    output_path: outPath,
    format,
    files,
    input_bytes: total,
    output_bytes: outputBytes,
    ratio: total ? Math.round((outputBytes / total) * 10000) / 10000 : 0,
    sha256,
  };
}
