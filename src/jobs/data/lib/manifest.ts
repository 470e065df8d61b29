/**
 * Backup manifests: every file of a snapshot with its size, mtime and sha256. Snapshots are directories
 * named by their UTC time (`20240102T030405123Z`), so the newest sorts last.
 *
 * On disk a manifest is two files: `manifest.json` (the snapshot's facts and the sha256 of its file list)
 * and `files.json` (the file list). An unchanged dataset has the same file list as its previous snapshot,
 * so `files.json` is hard-linked to the previous one and a backup of it adds a few hundred bytes, however
 * many files it holds. Manifests written with the list inline (version 1) are still read.
 */
import { createHash } from 'node:crypto';
import { link, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface ManifestFile {
  path: string;
  size: number;
  /** mtime in milliseconds since the epoch. */
  mtime_ms: number;
  sha256: string;
}

export interface Manifest {
  version: 1 | 2;
  created_at: string;
  source_dir: string;
  snapshot: string;
  previous: string | null;
  files: ManifestFile[];
  total_bytes: number;
  /** sha256 of `files.json` (version 2). */
  files_sha256?: string;
}

/** What `manifest.json` holds in version 2: the list lives in `files.json`. */
type ManifestHeader = Omit<Manifest, 'files'> & { files_file: string; file_count: number };

export const SNAPSHOT_NAME = /^\d{8}T\d{9}Z$/;
export const MANIFEST_FILE = 'manifest.json';
export const FILES_FILE = 'files.json';
export const DATA_DIR = 'data';

export function snapshotName(now = new Date()): string {
  return now.toISOString().replace(/[-:.]/g, '');
}

/** Snapshot names in a backup dir, oldest first. */
export async function listSnapshots(backupDir: string): Promise<string[]> {
  try {
    return (await readdir(backupDir)).filter((n) => SNAPSHOT_NAME.test(n)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

export async function readManifest(snapshotDir: string): Promise<Manifest> {
  const head = JSON.parse(await readFile(join(snapshotDir, MANIFEST_FILE), 'utf8')) as
    Manifest | ManifestHeader;
  if ('files' in head && Array.isArray(head.files)) return head;
  const { files_file: filesFile, file_count: _count, ...rest } = head as ManifestHeader;
  const files = JSON.parse(await readFile(join(snapshotDir, filesFile), 'utf8')) as ManifestFile[];
  return { ...rest, files };
}

/**
 * Writes a manifest into a snapshot directory; the file list is hard-linked to the previous snapshot's
 * when it is the same. Returns the bytes it added.
 */
export async function writeManifest(
  snapshotDir: string,
  manifest: Omit<Manifest, 'version' | 'files_sha256'>,
  previous: { dir: string; manifest: Manifest } | null,
): Promise<number> {
  const list = JSON.stringify(manifest.files);
  const sha = createHash('sha256').update(list).digest('hex');
  let added = 0;
  const linked =
    previous?.manifest.files_sha256 === sha &&
    (await link(join(previous.dir, FILES_FILE), join(snapshotDir, FILES_FILE)).then(
      () => true,
      () => false,
    ));
  if (!linked) {
    await writeFile(join(snapshotDir, FILES_FILE), list, { flush: true });
    added += Buffer.byteLength(list);
  }
  const { files, ...facts } = manifest;
  const head: ManifestHeader = {
    version: 2,
    ...facts,
    files_file: FILES_FILE,
    file_count: files.length,
    files_sha256: sha,
  };
  const text = JSON.stringify(head, null, 1);
  await writeFile(join(snapshotDir, MANIFEST_FILE), text, { flush: true });
  return added + Buffer.byteLength(text);
}

/** The newest snapshot that has a manifest, or null. */
export async function newestSnapshot(
  backupDir: string,
): Promise<{ name: string; manifest: Manifest } | null> {
  const names = await listSnapshots(backupDir);
  for (const name of names.reverse()) {
    try {
      return { name, manifest: await readManifest(join(backupDir, name)) };
    } catch {
      // a snapshot without a readable manifest is not a base for anything
    }
  }
  return null;
}
