/**
 * The options of an extraction, defined once: file_extraction's schema takes them beside its data-dir
 * path fields, and extractArchive's own input (for a call outside a job) beside plain path strings.
 * Built on first use, so neither the job type's module nor the core's loads zod.
 */
import type { z } from 'zod';
import { lazySchema } from '../../lazyZod.js';

export const extractOptionFields = lazySchema((z) => ({
  format: z.enum(['auto', 'zip', 'tar', 'tar.gz', 'tar.zst']).default('auto'),
  max_bytes: z.number().int().positive().optional().describe('stop past this many bytes written'),
  max_entries: z.number().int().positive().optional().describe('stop past this many entries'),
  on_existing: z
    .enum(['replace', 'merge', 'fail'])
    .default('replace')
    .describe('a non-empty extract_dir: replace it whole, merge top-level entries into it, or fail'),
}));

/** extractArchive's input when it is called outside a job: the archive's legacy name accepted too. */
export const extractInput = lazySchema((z) =>
  z
    .object({
      archive: z.string().optional().describe('the archive to unpack (legacy name: zip_file)'),
      zip_file: z.string().optional().describe('legacy name of archive'),
      extract_dir: z.string().describe('the directory to create with the archive contents'),
      ...extractOptionFields(),
    })
    .refine((v) => v.archive !== undefined || v.zip_file !== undefined, {
      message: 'archive (or its legacy name zip_file) is required',
      path: ['archive'],
    }),
);
export type ExtractInput = z.input<ReturnType<typeof extractInput>>;
/** The input as its schema parsed it (defaults applied): what the job type hands the core. */
export type ExtractOptions = z.output<ReturnType<typeof extractInput>>;
