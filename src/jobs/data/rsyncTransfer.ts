import { defineJobType } from '../defineJobType.js';
import { dataPath } from '../dataPath.js';
import { isRsyncDaemon } from './lib/rsync.js';
import { parseLegacyRsyncOptions, rsyncOptions } from './lib/rsyncOptions.js';
import { DATA_TYPE_DEFAULTS } from './typeDefaults.js';
import { legacyJobFields, pathOrRemote, runCore } from './typeKit.js';

/** rsync keeps "the contents of" in a trailing slash; the folder itself is what must be in a data dir. */
const localOf = (value: string): string | null =>
  isRsyncDaemon(value) ? null : value.length > 1 ? value.replace(/\/+$/, '') : value;
const REMOTES = 'rsync://[user@]host[:port]/module/path or [user@]host::module/path';

/** Built-in job type `rsync_transfer`: real rsync between data-dir paths and rsync daemons. */
export default defineJobType({
  name: 'rsync_transfer',
  description:
    'Runs rsync between paths in the data dirs and rsync daemons; options are a typed allow-list (legacy rsync_options too).',
  schemas: (z) => ({
    input: z.strictObject({
      source: pathOrRemote(localOf, { mode: 'read', remotes: REMOTES }),
      destination: pathOrRemote(localOf, { mode: 'write', remotes: REMOTES }),
      options: rsyncOptions().optional(),
      rsync_options: z
        .union([z.string(), z.array(z.string())], { error: 'must be a string of flags or a list of flags' })
        .superRefine((flags, ctx) => {
          try {
            parseLegacyRsyncOptions(flags);
          } catch (err) {
            ctx.addIssue({ code: 'custom', message: (err as Error).message });
          }
        })
        .optional()
        .describe('legacy flags; accepted only when each is on the allow-list'),
      password_file: dataPath({
        mode: 'read',
        kind: 'file',
        description: 'rsync daemon password file (in the data dirs, mode 600)',
      }).optional(),
      ...legacyJobFields(),
    }),
    output: z.strictObject({
      files_transferred: z.number().int().min(0),
      bytes_transferred: z.number().min(0),
      total_files: z.number().int().min(0),
      total_size: z.number().min(0),
      deleted_files: z.number().int().min(0),
      bytes_sent: z.number().min(0),
      bytes_received: z.number().min(0),
      speed_bytes_per_sec: z.number().min(0),
      dry_run: z.boolean(),
      duration_ms: z.number().min(0),
    }),
  }),
  defaults: DATA_TYPE_DEFAULTS.rsync_transfer,
  // The core (and what it imports) loads when a job runs, not when jobctl reads the schemas.
  handler: async (input, ctx) => runCore((await import('./lib/rsync.js')).rsyncTransferParsed, input, ctx),
});
