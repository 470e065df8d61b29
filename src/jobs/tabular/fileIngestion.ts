import { defineJobType } from '../defineJobType.js';
import { dataPath } from '../dataPath.js';
import { COLUMN_TYPES } from './lib/columnTypes.js';
import { TABULAR_TYPES } from './typeDefaults.js';
import { runIngestCore } from './ingestKit.js';
import { distinctPaths } from './processKit.js';

const FORMATS = ['csv', 'tsv', 'json', 'ndjson'] as const;
const POLICIES = ['fail', 'skip', 'quarantine'] as const;

/** Built-in job type `file_ingestion`: a CSV, TSV, JSON or NDJSON file to an NDJSON record file. */
export default defineJobType({
  name: 'file_ingestion',
  description:
    'Reads a CSV, TSV, JSON (array) or NDJSON file in a data dir, streamed, converts typed columns and writes the records as NDJSON; bad rows fail the job, are skipped or go to a quarantine file.',
  schemas: (z) => ({
    input: z
      .strictObject({
        source: dataPath({ mode: 'read', kind: 'file', mustExist: true, description: 'the file to read' }),
        output: dataPath({ mode: 'write', description: 'the NDJSON file to write (replaced whole)' }),
        format: z
          .enum(FORMATS, { error: `must be one of ${FORMATS.join(', ')}` })
          .optional()
          .describe('default: from the extension (.csv, .tsv/.tab, .json, .ndjson/.jsonl)'),
        delimiter: z
          .string({ error: 'must be a delimiter of 1 to 8 characters, e.g. "," ";" "|" or "\\t"' })
          .min(1, { error: 'must be a delimiter of 1 to 8 characters, e.g. "," ";" "|" or "\\t"' })
          .max(8, { error: 'must be a delimiter of 1 to 8 characters, e.g. "," ";" "|" or "\\t"' })
          .optional()
          .describe('CSV/TSV: default "," (csv) or a tab (tsv)'),
        quote: z
          .union([z.string().length(1), z.null()], { error: 'must be one character, or null for no quoting' })
          .optional()
          .describe("CSV/TSV: default '\"' (csv) or none (tsv)"),
        header: z
          .boolean({ error: 'must be true or false' })
          .default(true)
          .describe('CSV/TSV: the first line names the fields (else col1, col2, ... or columns)'),
        columns: z
          .array(z.string().min(1, { error: 'must be a field name (not empty)' }), {
            error: 'must be a list of field names',
          })
          .min(1, { error: 'must name at least one field' })
          .optional()
          .describe('CSV/TSV: field names (with header true, the header line is skipped)'),
        records_path: z
          .string({ error: 'must be a dot path, e.g. "data.items"' })
          .regex(/^(\$(\.[^.]+)*|[^.$][^.]*(\.[^.]+)*)?$/, { error: 'must be a dot path, e.g. "data.items"' })
          .optional()
          .describe('JSON: where the array of records is (default: the top level)'),
        types: z
          .record(
            z.string().min(1),
            z.enum(COLUMN_TYPES, { error: `must be one of ${COLUMN_TYPES.join(', ')}` }),
            {
              error: `must be an object of field → type (${COLUMN_TYPES.join(', ')})`,
            },
          )
          .optional()
          .describe('field → type; an empty value becomes null, a value that does not convert is a bad row'),
        bad_rows: z
          .enum(POLICIES, { error: `must be one of ${POLICIES.join(', ')}` })
          .default('fail')
          .describe(
            'fail: the job fails at the first bad row; skip: counted; quarantine: written to quarantine',
          ),
        quarantine: dataPath({
          mode: 'write',
          description: 'bad_rows "quarantine": the NDJSON file of bad rows ({line, reason, raw})',
        }).optional(),
      })
      .superRefine((v, ctx) => {
        distinctPaths({ source: v.source, output: v.output, quarantine: v.quarantine }, ctx);
        if (v.bad_rows === 'quarantine' && v.quarantine === undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['quarantine'],
            message: 'bad_rows is "quarantine": give quarantine, a file path in a data dir',
          });
        }
        if (v.quarantine !== undefined && v.bad_rows !== 'quarantine') {
          ctx.addIssue({
            code: 'custom',
            path: ['quarantine'],
            message: `is only used with bad_rows "quarantine" (bad_rows is "${v.bad_rows}")`,
          });
        }
      }),
    output: z.strictObject({
      source: z.string(),
      output: z.string(),
      format: z.enum(FORMATS),
      rows: z.number().int().min(0),
      records: z.number().int().min(0),
      bad_rows: z.number().int().min(0),
      skipped: z.number().int().min(0),
      quarantined: z.number().int().min(0),
      quarantine: z.string().nullable(),
      bad_row_samples: z.array(z.strictObject({ line: z.number().int(), reason: z.string() })),
      bytes_read: z.number().min(0),
      bytes_written: z.number().min(0),
      duration_ms: z.number().min(0),
    }),
  }),
  defaults: TABULAR_TYPES.file_ingestion,
  // The core (and the parsers) load when a job runs, not when jobctl reads the schemas.
  handler: async (input, ctx) =>
    runIngestCore((await import('./lib/fileIngest.js')).fileIngest, input, ctx, [
      input.output,
      input.quarantine,
    ]),
});
