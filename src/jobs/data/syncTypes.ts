/** The input and output google_sync and remote_sync share (both run the remote-sync core). */
import { legacyNames } from '../defineJobType.js';
import { dataPath } from '../dataPath.js';
import { lazySchema } from '../lazyZod.js';
import { rcloneOptions } from './lib/rcloneRun.js';
import { legacyJobFields, rcloneAccessFields, pathOrRemote } from './typeKit.js';

/** A file:/// source is a path in the data dirs; any other is a remote rclone checks when the job runs. */
const localOf = (value: string): string | null =>
  value.startsWith('file://') ? decodeURIComponent(value.slice('file://'.length)) : null;

/** Built on first use (both types share the instances), so neither module loads zod. */
export const syncSchemas = lazySchema((z) => ({
  input: legacyNames(
    z.strictObject({
      source: pathOrRemote(localOf, {
        mode: 'read',
        remotes:
          'remote:path of the rclone config, rclone:remote:path, a Google Drive folder link, or file:///path',
      }),
      destination: dataPath({ mode: 'write', kind: 'dir', description: 'the data dir folder to copy into' }),
      mode: z
        .enum(['copy', 'sync'])
        .default('copy')
        .describe('sync also deletes what the source no longer has'),
      ...rcloneAccessFields(),
      remote: z
        .string()
        .optional()
        .describe('for Google Drive links: the drive remote of the config (default: its only drive remote)'),
      options: rcloneOptions().optional(),
      ...legacyJobFields(),
    }),
    { data_url: 'source', input_dir: 'destination' },
  ),
  output: z.strictObject({
    source: z.string(),
    destination: z.string(),
    mode: z.enum(['copy', 'sync']),
    config_from: z.string(),
    files_transferred: z.number().int().min(0),
    bytes_transferred: z.number().min(0),
    checks: z.number().int().min(0),
    deletes: z.number().int().min(0),
    speed_bytes_per_sec: z.number().min(0),
    dry_run: z.boolean(),
    duration_ms: z.number().min(0),
  }),
}));
