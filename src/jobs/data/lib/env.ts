/**
 * What the dataset cores take from the daemon's settings, beside each job's input. A job handler builds
 * it once from the resolved settings.
 */
import type { DataRoots } from '../../lib/paths.js';

export interface DataEnv {
  /** The data dirs every path must stay inside; named roots (`upload`, `auth`, `backup`, ...) or a list. */
  dataDirs: DataRoots;
  /** file_extraction's limits when the input gives none. */
  extract?: { maxBytes?: number; maxEntries?: number };
  /** rclone: the config file used when the input names none, and the program's path. */
  rclone?: { config?: string; program?: string };
  /** dataset_conversion's command mode. */
  converter?: {
    program: string;
    /** Arguments before the legacy four (e.g. the script a program interprets). */
    args?: string[];
    /** A regex whose first group is a percent (default: `(\d+(?:\.\d+)?)%`). */
    progressRegex?: string;
  };
  /** SIGTERM → SIGKILL delay when a program is stopped. */
  killGraceMs?: number;
}
