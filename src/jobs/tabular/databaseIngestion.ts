import { defineJobType } from '../defineJobType.js';
import type { Zod } from '../lazyZod.js';
import { dataPath } from '../dataPath.js';
import { TABULAR_TYPES } from './typeDefaults.js';
import { runIngestCore } from './ingestKit.js';
import { handedSources } from './sources.js';

const doc = (z: Zod, what: string) =>
  z.record(z.string(), z.unknown(), {
    error: `must be ${what}: a JSON object (Extended JSON for dates, ids)`,
  });

/** Stages that write: a reading job refuses them. */
const WRITING_STAGES = ['$out', '$merge'];

/** Built-in job type `database_ingestion`: a MongoDB find or aggregation to an NDJSON record file. */
export default defineJobType({
  name: 'database_ingestion',
  description:
    'Runs a MongoDB find (filter, projection, sort, limit) or aggregation pipeline against a source of the settings (its URI), in batches by cursor, and writes the documents as NDJSON in relaxed Extended JSON.',
  schemas: (z) => ({
    input: z
      .strictObject({
        source: z
          .string({ error: "must be the name of a mongodb source of the settings' tabular.sources" })
          .regex(/^[A-Za-z][A-Za-z0-9_-]{0,63}$/, {
            error: "must be the name of a mongodb source of the settings' tabular.sources",
          }),
        database: z
          .string({ error: 'must be a database name' })
          .regex(/^[^/\\. "$*<>:|?\0]{1,63}$/, {
            error: 'must be a database name of 1 to 63 characters without / \\ . " $ * < > : | ? or spaces',
          })
          .optional()
          .describe("default: the source's database, else its URI's"),
        collection: z.string({ error: 'must be a collection name' }).regex(/^(?!system\.)[^$\0]{1,255}$/, {
          error: 'must be a collection name (1 to 255 characters, no $, not system.*)',
        }),
        filter: doc(z, 'a query filter').optional(),
        projection: doc(z, 'a projection').optional(),
        sort: doc(z, 'a sort').optional(),
        limit: z.number().int().min(1).optional(),
        pipeline: z
          .array(doc(z, 'a pipeline stage'), { error: 'must be an aggregation pipeline: a list of stages' })
          .optional(),
        batch_size: z.number().int().min(1).max(100_000).default(1000).describe('documents per cursor batch'),
        output: dataPath({ mode: 'write', description: 'the NDJSON file to write (replaced whole)' }),
      })
      .superRefine((v, ctx) => {
        const find = ['filter', 'projection', 'sort', 'limit'].filter(
          (k) => v[k as keyof typeof v] !== undefined,
        );
        if (v.pipeline && find.length) {
          ctx.addIssue({
            code: 'custom',
            path: ['pipeline'],
            message: `give a pipeline or a find (${find.join(', ')}), not both`,
          });
        }
        v.pipeline?.forEach((stage, i) => {
          const w = Object.keys(stage).find((k) => WRITING_STAGES.includes(k));
          if (w) {
            ctx.addIssue({
              code: 'custom',
              path: ['pipeline', i],
              message: `${w} writes to the database; database_ingestion only reads (its output is the NDJSON file)`,
            });
          }
        });
      }),
    output: z.strictObject({
      source: z.string(),
      database: z.string(),
      collection: z.string(),
      output: z.string(),
      records: z.number().int().min(0),
      batches: z.number().int().min(0),
      bytes_written: z.number().min(0),
      duration_ms: z.number().min(0),
    }),
  }),
  defaults: TABULAR_TYPES.database_ingestion,
  handler: async (input, ctx) => {
    const { dbIngest } = await import('./lib/dbIngest.js');
    const sources = handedSources();
    return runIngestCore((i: typeof input, c) => dbIngest(i, c, { sources }), input, ctx, [input.output]);
  },
});
