import { defineJobType } from '../defineJobType.js';
import { dataPath } from '../dataPath.js';
import { rcloneOptions } from './lib/rcloneRun.js';
import { DATA_TYPE_DEFAULTS } from './typeDefaults.js';
import { legacyJobFields, rcloneAccessFields, runCore } from './typeKit.js';

const file = dataPath({ mode: 'read', description: 'a file or directory in the data dirs' });

/** Built-in job type `file_upload`: rclone copy to a remote, then a verification of the copy. */
export default defineJobType({
  name: 'file_upload',
  description:
    'Uploads files or a directory from the data dirs to an rclone remote, resumably, then verifies the copy (rclone check).',
  schemas: (z) => ({
    input: z.strictObject({
      files: z
        .union([file, z.array(file).min(1, { error: 'must name at least one file' })], {
          error: 'must be a path or a list of paths in the data dirs',
        })
        .describe('files or directories in the data dirs (a directory is uploaded with its contents)'),
      destination: z
        .string({ error: 'must be remote:path (a remote of the rclone config)' })
        .regex(/^(?!\/)[A-Za-z0-9_. -]+:/, { error: 'must be remote:path (a remote of the rclone config)' }),
      ...rcloneAccessFields(),
      verify: z
        .enum(['auto', 'hash', 'download', 'none'])
        .default('auto')
        .describe('auto: by hash when the remote has one, else by download'),
      options: rcloneOptions().optional(),
      ...legacyJobFields(),
    }),
    output: z.strictObject({
      destination: z.string(),
      files: z.number().int().min(0),
      bytes: z.number().min(0),
      transferred_files: z.number().int().min(0),
      transferred_bytes: z.number().min(0),
      verified: z.boolean(),
      verify_method: z.enum(['hash', 'download', 'none']),
      config_from: z.string(),
      duration_ms: z.number().min(0),
    }),
  }),
  defaults: DATA_TYPE_DEFAULTS.file_upload,
  // The core (and what it imports) loads when a job runs, not when jobctl reads the schemas.
  handler: async (input, ctx) => runCore((await import('./lib/upload.js')).fileUploadParsed, input, ctx),
});
