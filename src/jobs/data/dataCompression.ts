import { defineJobType } from '../defineJobType.js';
import { dataPath } from '../dataPath.js';
import { DATA_TYPE_DEFAULTS } from './typeDefaults.js';
import { legacyJobFields, runCore } from './typeKit.js';

/** Built-in job type `data_compression`: a directory into tar.zst (default), tar.gz or tar.lz4. */
export default defineJobType({
  name: 'data_compression',
  description:
    'Packs a directory into tar.zst (default), tar.gz or tar.lz4 (the legacy "lz4"), written under a temporary name and renamed; returns sizes, ratio and sha256.',
  schemas: (z) => ({
    input: z.strictObject({
      source_dir: dataPath({ mode: 'read', kind: 'dir', description: 'the directory to pack' }),
      output_path: dataPath({
        mode: 'write',
        description: 'the archive to write (default: <source_dir>.tar.zst beside it)',
      }).optional(),
      compression_type: z
        .enum(['zstd', 'tar.zst', 'gzip', 'tar.gz', 'lz4', 'tar.lz4'])
        .default('zstd')
        .describe('tar.zst (default), tar.gz, or tar.lz4 (the legacy default "lz4")'),
      level: z.number().int().min(1).max(19).optional().describe('zstd 1-19 (3), gzip 1-9 (6), lz4 1-12 (1)'),
      threads: z.number().int().min(0).max(256).optional().describe('zstd worker threads; 0 = one per core'),
      ...legacyJobFields(),
    }),
    output: z.strictObject({
      output_path: z.string(),
      format: z.enum(['tar.zst', 'tar.gz', 'tar.lz4']),
      files: z.number().int().min(0),
      input_bytes: z.number().min(0),
      output_bytes: z.number().min(0),
      ratio: z.number().min(0),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
    }),
  }),
  defaults: DATA_TYPE_DEFAULTS.data_compression,
  // The core (and what it imports) loads when a job runs, not when jobctl reads the schemas.
  handler: async (input, ctx) =>
    runCore((await import('./lib/compress.js')).compressDirectoryParsed, input, ctx),
});
