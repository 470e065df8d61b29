/**
 * Backup manifests: every file of a snapshot with its size, mtime and sha256. Snapshots are directories
 * named by their UTC time (`20240102T030405123Z`), so the newest sorts last.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface ManifestFile {
  path: string;
  size: number;
  /** mtime in milliseconds since the epoch. */
  mtime_ms: number;
  sha256: string;
}

export interface Manifest {
  version: 1;
  created_at: string;
  source_dir: string;
  snapshot: string;
  previous: string | null;
  files: ManifestFile[];
  total_bytes: number;
}

export const SNAPSHOT_NAME = /^\d{8}T\d{9}Z$/;
export const MANIFEST_FILE = 'manifest.json';
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
  return JSON.parse(await readFile(join(snapshotDir, MANIFEST_FILE), 'utf8')) as Manifest;
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
