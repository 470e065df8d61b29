/**
 * The dataset cores' DataEnv, built in the job's child from what the daemon handed it: the data dirs
 * (the typed context's) and the `data` settings with worker.killGraceMs, as JSON in JOBD_DATA_SETTINGS.
 * A child started without them (a test, a library run) gets the cores' own defaults.
 */
import type { DataDirs } from '../dataPath.js';
import type { DataEnv } from './lib/env.js';

interface HandedSettings {
  extract?: { maxBytes?: number; maxEntries?: number };
  rclone?: { config?: string; program?: string };
  converter?: { program: string; args?: string[]; progressRegex?: string };
  killGraceMs?: number;
}

export function dataEnvFor(dataDirs: DataDirs, text = process.env.JOBD_DATA_SETTINGS): DataEnv {
  let s: HandedSettings = {};
  if (text) {
    try {
      s = JSON.parse(text) as HandedSettings;
    } catch (err) {
      // Written by the daemon from validated settings: unreadable text is a bug, not a user's mistake.
      throw new Error(`JOBD_DATA_SETTINGS is not JSON: ${(err as Error).message}`, { cause: err });
    }
  }
  return {
    dataDirs,
    ...(s.extract ? { extract: s.extract } : {}),
    ...(s.rclone ? { rclone: s.rclone } : {}),
    ...(s.converter ? { converter: s.converter } : {}),
    ...(s.killGraceMs !== undefined ? { killGraceMs: s.killGraceMs } : {}),
  };
}
