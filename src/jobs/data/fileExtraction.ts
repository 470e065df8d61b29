import { defineJobType, legacyNames } from '../defineJobType.js';
import { dataPath } from '../dataPath.js';
import { extractOptionFields } from './lib/extractInput.js';
import { DATA_TYPE_DEFAULTS } from './typeDefaults.js';
import { legacyJobFields, runCore } from './typeKit.js';

/** Built-in job type `file_extraction`: zip, tar, tar.gz and tar.zst, refusing hostile entries. */
export default defineJobType({
  name: 'file_extraction',
  description:
    'Unpacks a zip, tar, tar.gz or tar.zst into a directory, whole or not at all; refuses traversal, links out, devices, and stops at the size and entry limits.',
  schemas: (z) => ({
    input: legacyNames(
      z.strictObject({
        archive: dataPath({ mode: 'read', kind: 'file', description: 'the archive to unpack' }),
        extract_dir: dataPath({
          mode: 'write',
          description: 'the directory to create with the archive contents',
        }),
        ...extractOptionFields(),
        ...legacyJobFields(),
      }),
      { zip_file: 'archive' },
    ),
    output: z.strictObject({
      extract_dir: z.string(),
      format: z.enum(['zip', 'tar', 'tar.gz', 'tar.zst']),
      entries: z.number().int().min(0),
      bytes: z.number().min(0),
    }),
  }),
  defaults: DATA_TYPE_DEFAULTS.file_extraction,
  // The core (and what it imports) loads when a job runs, not when jobctl reads the schemas.
  handler: async (input, ctx) => runCore((await import('./lib/extract.js')).extractArchiveParsed, input, ctx),
});
