import { defineJobType } from '../defineJobType.js';
import { dataPath } from '../dataPath.js';
import { conversionInput } from './lib/convert.js';
import { DATA_TYPE_DEFAULTS } from './typeDefaults.js';
import { legacyJobFields, runCore } from './typeKit.js';

/**
 * Built-in job type `dataset_conversion`: ome-zarr mode (jobd's converter, TIFF/MRC/HDF5 → OME-Zarr 0.4)
 * or command mode (the converter of the settings, as the legacy service ran it).
 */
export default defineJobType({
  name: 'dataset_conversion',
  description:
    'Converts a dataset into a temporary sibling renamed into place when it succeeds. mode ome-zarr: a TIFF, MRC or HDF5 stack to an OME-Zarr 0.4 pyramid (resumable); mode command: the configured converter (data.converter), <program> [args...] <input> <output> <sensor> <k=v,...>. Default: command when data.converter.program is set, else ome-zarr.',
  schemas: (z) => ({
    input: z.strictObject({
      input_path: dataPath({ mode: 'read', description: 'the dataset file or folder to convert' }),
      output_path: dataPath({
        mode: 'write',
        description: 'where the converted dataset goes (replaced when the conversion succeeds)',
      }),
      sensor_type: conversionInput().shape.sensor_type,
      conversion_params: conversionInput().shape.conversion_params,
      mode: conversionInput().shape.mode,
      output_kind: conversionInput().shape.output_kind,
      chunks: conversionInput().shape.chunks,
      compression: conversionInput().shape.compression,
      ...legacyJobFields(),
    }),
    output: z.strictObject({
      mode: z.enum(['ome-zarr', 'command']),
      output_path: z.string(),
      sensor_type: z.string().optional(),
      format: z.enum(['tiff', 'mrc', 'hdf5']).optional(),
      levels: z.array(z.array(z.number().int())).optional(),
      planes: z.number().int().min(0).optional(),
      blocks_skipped: z.number().int().min(0).optional(),
      output_files: z.number().int().min(0),
      output_bytes: z.number().min(0),
      duration_ms: z.number().min(0),
    }),
  }),
  defaults: DATA_TYPE_DEFAULTS.dataset_conversion,
  // The core (and what it imports) loads when a job runs, not when jobctl reads the schemas.
  handler: async (input, ctx) => runCore((await import('./lib/convert.js')).convertDatasetParsed, input, ctx),
});
