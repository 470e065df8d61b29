/**
 * backup_creation: an incremental snapshot of a dataset directory under the backup dir. rsync copies the
 * dataset with `--link-dest` to the previous snapshot, so unchanged files are hard links and cost no
 * space; a manifest records each file's path, size, mtime and sha256. A file whose size and mtime match
 * the previous manifest keeps its recorded hash, so an unchanged dataset is not read again. The
 * snapshot is built under a temporary name and renamed when whole; a crashed run's temporary is removed
 * by the next run.
 */
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { z } from 'zod';
import { lazySchema } from '../../lazyZod.js';
import { cleanStaleTemps, fsyncDir, tempSibling } from '../../lib/atomic.js';
import type { CoreContext } from '../../lib/context.js';
import { asAbort, throwIfAborted } from '../../lib/errors.js';
import { sha256File } from '../../lib/hash.js';
import { confine, namedRoot, recheck } from '../../lib/paths.js';
import { runTool } from '../../lib/tool.js';
import { RSYNC } from '../../lib/toolTable.js';
import type { DataEnv } from './env.js';
import {
  DATA_DIR,
  MANIFEST_FILE,
  newestSnapshot,
  snapshotName,
  writeManifest,
  type ManifestFile,
} from './manifest.js';
import { parseProgress2 } from './rsync.js';
import { listTree } from './tarPack.js';

export const backupInput = lazySchema((z) =>
  z.object({
    source_dir: z.string().describe('the dataset directory to back up'),
    backup_dir: z
      .string()
      .optional()
      .describe('where its snapshots live (default: <backup data dir>/<name of source_dir>)'),
  }),
);
export type BackupInput = z.input<ReturnType<typeof backupInput>>;
/** The input as its schema parsed it (defaults applied): what the job type hands the core. */
export type BackupOptions = z.output<ReturnType<typeof backupInput>>;

export interface BackupResult {
  snapshot_path: string;
  manifest_path: string;
  previous_snapshot: string | null;
  files: number;
  bytes: number;
  /** Files not hard-linked to the previous snapshot, and their bytes (plus the manifest). */
  new_files: number;
  new_bytes: number;
  /** Files whose sha256 was computed (the others reused the previous manifest's). */
  hashed_files: number;
}

/** Validates its input itself (a call outside a job); a job type calls createBackupParsed. */
export async function createBackup(
  input: BackupInput,
  ctx: CoreContext,
  env: DataEnv,
): Promise<BackupResult> {
  return createBackupParsed(backupInput().parse(input), ctx, env);
}

/** createBackup for an input its job type's schema parsed (the daemon or the handler did). */
export async function createBackupParsed(
  opts: BackupOptions,
  ctx: CoreContext,
  env: DataEnv,
): Promise<BackupResult> {
  const source = await confine(opts.source_dir, env.dataDirs, {
    field: 'source_dir',
    mustExist: true,
    kind: 'dir',
  });
  const backupPath = opts.backup_dir ?? join(namedRoot(env.dataDirs, 'backup'), basename(source.real));
  const backup = await confine(backupPath, env.dataDirs, { field: 'backup_dir', forWrite: true });
  await mkdir(backup.real, { recursive: true });
  const marker = join(backup.real, 'snapshot');
  const stale = await cleanStaleTemps(marker);
  if (stale.length) ctx.log("removed a crashed run's temporary snapshot", { paths: stale });

  const prev = await newestSnapshot(backup.real);
  const tmp = tempSibling(marker);
  try {
    await mkdir(tmp);
    await recheck(backup, env.dataDirs);
    const args = ['--archive', '--hard-links', '--info=progress2', '--no-inc-recursive'];
    if (prev) args.push(`--link-dest=${join(backup.real, prev.name, DATA_DIR)}`);
    await runTool(
      {
        tool: RSYNC,
        args: [...args, '--', `${source.real}/`, join(tmp, DATA_DIR)],
        progress: (l) => {
          const p = parseProgress2(l);
          return p && { percent: p.percent * 0.7, message: `copying: ${p.message}` };
        },
        progressFrom: 'stdout',
        killGraceMs: env.killGraceMs,
      },
      ctx,
    );

    const known = new Map<string, ManifestFile>((prev?.manifest.files ?? []).map((f) => [f.path, f]));
    const entries = (await listTree(join(tmp, DATA_DIR), ctx)).filter((e) => e.type === 'file');
    const files: ManifestFile[] = [];
    let hashed = 0;
    let newFiles = 0;
    let newBytes = 0;
    let total = 0;
    for (const [i, e] of entries.entries()) {
      throwIfAborted(ctx.signal, 'backup_creation');
      const mtimeMs = e.mtime.getTime();
      const old = known.get(e.rel);
      let sha256: string;
      if (old && old.size === e.size && old.mtime_ms === mtimeMs) sha256 = old.sha256;
      else {
        sha256 = await sha256File(e.abs, ctx.signal);
        hashed += 1;
      }
      // Linked to the previous snapshot's copy: same inode there, so no new space.
      const linked = prev
        ? await stat(join(backup.real, prev.name, DATA_DIR, e.rel))
            .then((s) => `${s.dev}:${s.ino}` === e.devIno)
            .catch(() => false)
        : false;
      if (!linked) {
        newFiles += 1;
        newBytes += e.size;
      }
      total += e.size;
      files.push({ path: e.rel, size: e.size, mtime_ms: mtimeMs, sha256 });
      if (i % 200 === 0)
        ctx.progress(70 + (i / entries.length) * 29, `manifest: ${i}/${entries.length} files`);
    }
    const name = snapshotName();
    const manifestBytes = await writeManifest(
      tmp,
      {
        created_at: new Date().toISOString(),
        source_dir: opts.source_dir,
        snapshot: name,
        previous: prev?.name ?? null,
        files,
        total_bytes: total,
      },
      prev ? { dir: join(backup.real, prev.name), manifest: prev.manifest } : null,
    );
    await recheck(backup, env.dataDirs);
    await rename(tmp, join(backup.real, name));
    await fsyncDir(backup.real);
    const snapshotPath = join(backupPath, name);
    ctx.progress(100, `snapshot ${name}: ${files.length} files, ${newBytes} new bytes`);
    return {
      snapshot_path: snapshotPath,
      manifest_path: join(snapshotPath, MANIFEST_FILE),
      previous_snapshot: prev ? join(backupPath, prev.name) : null,
      files: files.length,
      bytes: total,
      new_files: newFiles,
      new_bytes: newBytes + manifestBytes,
      hashed_files: hashed,
    };
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw asAbort(err, ctx.signal, 'backup_creation');
  }
}
