import { defineJobType } from '../defineJobType.js';
import { dataPath } from '../dataPath.js';
import { DATA_TYPE_DEFAULTS } from './typeDefaults.js';
import { legacyJobFields, runCore } from './typeKit.js';

/** Built-in job type `backup_creation`: an incremental snapshot (rsync --link-dest) with a manifest. */
export default defineJobType({
  name: 'backup_creation',
  description:
    'Takes an incremental snapshot of a dataset directory (unchanged files hard-linked to the previous one) with a manifest of sizes, mtimes and sha256.',
  schemas: (z) => ({
    input: z.strictObject({
      source_dir: dataPath({ mode: 'read', kind: 'dir', description: 'the dataset directory to back up' }),
      backup_dir: dataPath({
        mode: 'write',
        description: 'where its snapshots live (default: <backup data dir>/<name of source_dir>)',
      }).optional(),
      ...legacyJobFields(),
    }),
    output: z.strictObject({
      snapshot_path: z.string(),
      manifest_path: z.string(),
      previous_snapshot: z.string().nullable(),
      files: z.number().int().min(0),
      bytes: z.number().min(0),
      new_files: z.number().int().min(0),
      new_bytes: z.number().min(0),
      hashed_files: z.number().int().min(0),
    }),
  }),
  defaults: DATA_TYPE_DEFAULTS.backup_creation,
  // The core (and what it imports) loads when a job runs, not when jobctl reads the schemas.
  handler: async (input, ctx) => runCore((await import('./lib/backup.js')).createBackupParsed, input, ctx),
});
