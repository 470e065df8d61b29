/**
 * data_validation: checks a dataset against its newest backup manifest (missing, extra and changed
 * files), tests its archives (every entry read through; zip CRC-32 and sizes, tar headers and
 * decompression), and checks the headers of known scientific formats. An invalid dataset fails with a
 * non-retryable DatasetInvalidError whose `details` list every problem.
 */
import { basename, join } from 'node:path';
import type { z } from 'zod';
import { lazySchema } from '../../lazyZod.js';
import type { CoreContext } from '../../lib/context.js';
import { asAbort, DatasetInvalidError, throwIfAborted } from '../../lib/errors.js';
import { sha256File } from '../../lib/hash.js';
import { confine, namedRoot } from '../../lib/paths.js';
import { detectFormat, tarEntries, zipEntries } from './archiveReaders.js';
import type { DataEnv } from './env.js';
import { checkFormat, formatOf } from './formatChecks.js';
import { newestSnapshot } from './manifest.js';
import { listTree } from './tarPack.js';

export const validateInput = lazySchema((z) =>
  z.object({
    dataset_dir: z.string().describe('the dataset directory to check'),
    backup_dir: z
      .string()
      .optional()
      .describe('its snapshots (default: <backup data dir>/<name of dataset_dir>)'),
    deep: z.boolean().default(false).describe('hash every file, not only those whose size or mtime changed'),
    check_archives: z.boolean().default(true),
    check_formats: z.boolean().default(true),
  }),
);
export type ValidateInput = z.input<ReturnType<typeof validateInput>>;
/** The input as its schema parsed it (defaults applied): what the job type hands the core. */
export type ValidateOptions = z.output<ReturnType<typeof validateInput>>;

export interface Problem {
  kind: 'missing' | 'extra' | 'changed' | 'archive' | 'format';
  path: string;
  detail: string;
}

export interface ValidateResult {
  dataset_dir: string;
  manifest: string | null;
  files: number;
  archives_checked: number;
  formats_checked: number;
  problems: Problem[];
  valid: boolean;
}

const ARCHIVE = /\.(zip|tar|tar\.gz|tgz|tar\.zst|tzst)$/i;

/** Validates its input itself (a call outside a job); a job type calls validateDatasetParsed. */
export async function validateDataset(
  input: ValidateInput,
  ctx: CoreContext,
  env: DataEnv,
): Promise<ValidateResult> {
  return validateDatasetParsed(validateInput().parse(input), ctx, env);
}

/** validateDataset for an input its job type's schema parsed (the daemon or the handler did). */
export async function validateDatasetParsed(
  opts: ValidateOptions,
  ctx: CoreContext,
  env: DataEnv,
): Promise<ValidateResult> {
  const ds = await confine(opts.dataset_dir, env.dataDirs, {
    field: 'dataset_dir',
    mustExist: true,
    kind: 'dir',
  });
  const problems: Problem[] = [];
  let manifestPath: string | null = null;
  try {
    const files = (await listTree(ds.real, ctx)).filter((e) => e.type === 'file');
    const backupPath = opts.backup_dir ?? backupDefault(env, ds.real);
    if (backupPath) {
      const backup = await confine(backupPath, env.dataDirs, { field: 'backup_dir' });
      const newest = await newestSnapshot(backup.real);
      if (newest) {
        manifestPath = join(backupPath, newest.name, 'manifest.json');
        const here = new Map(files.map((f) => [f.rel, f]));
        for (const m of newest.manifest.files) {
          const f = here.get(m.path);
          if (!f)
            problems.push({
              kind: 'missing',
              path: m.path,
              detail: `in the manifest of ${newest.name}, not in the dataset`,
            });
          else if (f.size !== m.size)
            problems.push({
              kind: 'changed',
              path: m.path,
              detail: `size ${f.size}, manifest says ${m.size}`,
            });
          else if (opts.deep || f.mtime.getTime() !== m.mtime_ms) {
            throwIfAborted(ctx.signal, 'data_validation');
            const sha = await sha256File(f.abs, ctx.signal);
            if (sha !== m.sha256)
              problems.push({
                kind: 'changed',
                path: m.path,
                detail: `sha256 ${sha}, manifest says ${m.sha256}`,
              });
          }
        }
        const listed = new Set(newest.manifest.files.map((m) => m.path));
        for (const f of files)
          if (!listed.has(f.rel))
            problems.push({ kind: 'extra', path: f.rel, detail: `not in the manifest of ${newest.name}` });
      }
    }
    ctx.progress(30, 'manifest compared');
    let archives = 0;
    let formats = 0;
    for (const [i, f] of files.entries()) {
      throwIfAborted(ctx.signal, 'data_validation');
      if (opts.check_archives && ARCHIVE.test(f.rel)) {
        archives += 1;
        const detail = await testArchive(f.abs, ctx);
        if (detail) problems.push({ kind: 'archive', path: f.rel, detail });
      }
      const fmt = opts.check_formats ? formatOf(f.rel) : null;
      if (fmt) {
        formats += 1;
        const detail = await checkFormat(f.abs, fmt).catch(
          (e: unknown) => `unreadable: ${(e as Error).message}`,
        );
        if (detail) problems.push({ kind: 'format', path: f.rel, detail });
      }
      if (i % 100 === 0) ctx.progress(30 + (i / files.length) * 69, `${i}/${files.length} files checked`);
    }
    const result: ValidateResult = {
      dataset_dir: opts.dataset_dir,
      manifest: manifestPath,
      files: files.length,
      archives_checked: archives,
      formats_checked: formats,
      problems,
      valid: problems.length === 0,
    };
    if (!result.valid) {
      const shown = problems
        .slice(0, 5)
        .map((p) => `${p.kind} ${p.path}: ${p.detail}`)
        .join('; ');
      throw new DatasetInvalidError(
        `dataset_dir "${opts.dataset_dir}" is invalid: ${problems.length} problem(s): ${shown}${problems.length > 5 ? '; ...' : ''}`,
        result,
      );
    }
    ctx.progress(100, `${files.length} files, no problems`);
    return result;
  } catch (err) {
    throw asAbort(err, ctx.signal, 'data_validation');
  }
}

function backupDefault(env: DataEnv, dataset: string): string | null {
  try {
    return join(namedRoot(env.dataDirs, 'backup'), basename(dataset));
  } catch {
    return null;
  }
}

/** Reads every entry of an archive through; returns what is wrong, or null. */
async function testArchive(path: string, ctx: CoreContext): Promise<string | null> {
  try {
    const format = await detectFormat(path);
    if (format === 'zip') {
      const zip = await zipEntries(path);
      for await (const e of zip.entries) {
        // A small entry is checked (size, CRC-32) from the reader's window, without a stream.
        if (e.type === 'file') {
          if (e.data) e.data();
          else for await (const _ of await e.content());
        }
      }
      return null;
    }
    const tar = tarEntries(path, format, ctx);
    for await (const e of tar.entries) {
      if (e.type === 'file') for await (const _ of await e.content());
    }
    await tar.done;
    return null;
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    return (err as Error).message;
  }
}
