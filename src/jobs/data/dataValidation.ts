import { defineJobType } from '../defineJobType.js';
import { dataPath } from '../dataPath.js';
import { DATA_TYPE_DEFAULTS } from './typeDefaults.js';
import { legacyJobFields, runCore } from './typeKit.js';

/** Built-in job type `data_validation`: manifest, archive and format checks of a dataset. */
export default defineJobType({
  name: 'data_validation',
  description:
    'Checks a dataset against its newest backup manifest, reads its archives through and checks TIFF, MRC, HDF5 and Zarr headers; an invalid dataset fails, not retried, with every problem listed.',
  schemas: (z) => ({
    input: z.strictObject({
      dataset_dir: dataPath({ mode: 'read', kind: 'dir', description: 'the dataset directory to check' }),
      backup_dir: dataPath({
        mode: 'read',
        description: 'its snapshots (default: <backup data dir>/<name of dataset_dir>)',
      }).optional(),
      deep: z
        .boolean()
        .default(false)
        .describe('hash every file, not only those whose size or mtime changed'),
      check_archives: z.boolean().default(true),
      check_formats: z.boolean().default(true),
      ...legacyJobFields(),
    }),
    output: z.strictObject({
      dataset_dir: z.string(),
      manifest: z.string().nullable(),
      files: z.number().int().min(0),
      archives_checked: z.number().int().min(0),
      formats_checked: z.number().int().min(0),
      problems: z.array(
        z.strictObject({
          kind: z.enum(['missing', 'extra', 'changed', 'archive', 'format']),
          path: z.string(),
          detail: z.string(),
        }),
      ),
      valid: z.boolean(),
    }),
  }),
  defaults: DATA_TYPE_DEFAULTS.data_validation,
  // The core (and what it imports) loads when a job runs, not when jobctl reads the schemas.
  handler: async (input, ctx) =>
    runCore((await import('./lib/validate.js')).validateDatasetParsed, input, ctx),
});
