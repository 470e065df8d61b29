import { defineJobType } from '../defineJobType.js';
import type { MetricOp } from './lib/metrics.js';
import {
  coreContext,
  distinctPaths,
  fieldName,
  peakRssBytes,
  prepareOutputs,
  recordsIn,
  recordsOut,
} from './processKit.js';
import { TABULAR_TYPES } from './typeDefaults.js';

const OPS = ['count', 'sum', 'mean', 'min', 'max', 'distinct_count'] as const satisfies readonly MetricOp[];

/** Built-in job type `data_aggregation`: group the records of an NDJSON file, in bounded memory. */
export default defineJobType({
  name: 'data_aggregation',
  description:
    'Groups the records of an NDJSON file by one or more fields with count, sum, mean, min, max and distinct_count, exactly and in bounded memory (sorted runs spilled beside the output and merged), or groups a MongoDB collection of a mongodb source in the database, as one aggregation pipeline; writes one record per group, sorted by key.',
  schemas: (z) => {
    const metric = z
      .partialRecord(z.enum(OPS), fieldName())
      .refine((m) => Object.keys(m).length === 1, {
        error: `must name one operation and its field, e.g. { "sum": "price" }, { "count": "*" } (operations: ${OPS.join(', ')})`,
      })
      .refine((m) => !Object.entries(m).some(([op, f]) => f === '*' && op !== 'count'), {
        error: '"*" (every row) is for count only',
      });
    return {
      input: z
        .strictObject({
          input: recordsIn('the NDJSON records to aggregate (or give source and collection)').optional(),
          source: z
            .string({ error: "must be the name of a mongodb source of the settings' tabular.sources" })
            .regex(/^[A-Za-z][A-Za-z0-9_-]{0,63}$/, {
              error: "must be the name of a mongodb source of the settings' tabular.sources",
            })
            .optional()
            .describe(
              'a mongodb source of the settings: the grouping runs in MongoDB, as an aggregation pipeline',
            ),
          database: z
            .string({ error: 'must be a database name' })
            .regex(/^[^/\\. "$*<>:|?\0]{1,63}$/, {
              error: 'must be a database name of 1 to 63 characters without / \\ . " $ * < > : | ? or spaces',
            })
            .optional()
            .describe("with source: default the source's database, else its URI's"),
          collection: z
            .string({ error: 'must be a collection name' })
            .regex(/^(?!system\.)[^$\0]{1,255}$/, {
              error: 'must be a collection name (1 to 255 characters, no $, not system.*)',
            })
            .optional()
            .describe('with source: the collection to group'),
          filter: z
            .record(z.string(), z.unknown(), { error: 'must be a query filter (an object)' })
            .optional()
            .describe('with source: a query filter ($match) applied first (Extended JSON)'),
          batch_size: z
            .number()
            .int()
            .min(1)
            .max(100_000)
            .default(1000)
            .describe('with source: groups per cursor batch'),
          output: recordsOut('where the groups go (NDJSON: the group fields, then the metrics)'),
          group_by: z
            .array(fieldName())
            .default([])
            .describe(
              'fields whose values form a group (a dotted name reaches into objects); none: one group',
            ),
          metrics: z
            .record(fieldName(), metric)
            .refine((m) => Object.keys(m).length > 0, { error: 'must name at least one metric' })
            .describe(
              'output field → { op: field }, op one of count ("*" for rows), sum, mean, min, max, distinct_count',
            ),
          spill_limit: z
            .number()
            .int()
            .min(1)
            .default(200_000)
            .describe(
              'groups plus distinct values held in memory before a sorted run is written to disk (a few hundred bytes each, plus the text of the keys)',
            ),
        })
        .superRefine((v, ctx) => {
          distinctPaths({ input: v.input, output: v.output }, ctx);
          const fromDb = v.source !== undefined || v.collection !== undefined;
          if (
            fromDb === (v.input !== undefined) ||
            (fromDb && (v.source === undefined || v.collection === undefined))
          ) {
            ctx.addIssue({
              code: 'custom',
              path: v.input !== undefined ? ['source'] : ['input'],
              message:
                'give input (an NDJSON file), or source and collection (a MongoDB collection), not both',
            });
          }
          if (!fromDb) {
            for (const k of ['database', 'filter'] as const) {
              if (v[k] !== undefined)
                ctx.addIssue({ code: 'custom', path: [k], message: 'goes with source and collection' });
            }
          }
          for (const name of Object.keys(v.metrics)) {
            if (v.group_by.includes(name)) {
              ctx.addIssue({
                code: 'custom',
                path: ['metrics', name],
                message: 'is also a group_by field: name the metric otherwise',
              });
            }
          }
          const dup = v.group_by.find((f, i) => v.group_by.indexOf(f) !== i);
          if (dup) ctx.addIssue({ code: 'custom', path: ['group_by'], message: `names "${dup}" twice` });
        }),
      output: z.strictObject({
        input: z.string().optional(),
        source: z.string().optional(),
        collection: z.string().optional(),
        output: z.string(),
        rows: z.number().int().min(0),
        groups: z.number().int().min(0),
        spilled_runs: z
          .number()
          .int()
          .min(0)
          .describe('sorted runs written to disk (0: all groups fit in memory)'),
        merge_passes: z.number().int().min(0),
        peak_rss_bytes: z.number().int().min(0),
        duration_ms: z.number().min(0),
      }),
    };
  },
  defaults: TABULAR_TYPES.data_aggregation,
  handler: async (input, ctx) => {
    const started = Date.now();
    const [output] = await prepareOutputs(ctx, [input.output]);
    const metrics = Object.entries(input.metrics).map(([name, m]) => {
      const [op, field] = Object.entries(m)[0] as [MetricOp, string];
      return { name, op, field };
    });
    if (input.source !== undefined && input.collection !== undefined) {
      const [{ aggregateInMongo }, { handedSources }] = await Promise.all([
        import('./lib/aggregateMongo.js'),
        import('./sources.js'),
      ]);
      const r = await aggregateInMongo(
        {
          source: input.source,
          database: input.database,
          collection: input.collection,
          filter: input.filter,
          groupBy: input.group_by,
          metrics,
          output: output!,
          batchSize: input.batch_size,
        },
        coreContext(ctx),
        { sources: handedSources() },
      );
      ctx.progress(100, `${r.groups} groups from ${r.rows} rows (in MongoDB)`);
      return {
        source: input.source,
        collection: `${r.database}.${r.collection}`,
        output: input.output,
        rows: r.rows,
        groups: r.groups,
        spilled_runs: 0,
        merge_passes: 0,
        peak_rss_bytes: peakRssBytes(),
        duration_ms: Date.now() - started,
      };
    }
    const { aggregateRecords } = await import('./lib/aggregate.js');
    const r = await aggregateRecords(
      {
        input: input.input!,
        output: output!,
        groupBy: input.group_by,
        metrics,
        spillLimit: input.spill_limit,
      },
      coreContext(ctx),
    );
    ctx.progress(100, `${r.groups} groups from ${r.rows} rows`);
    return {
      input: input.input,
      output: input.output,
      ...r,
      peak_rss_bytes: peakRssBytes(),
      duration_ms: Date.now() - started,
    };
  },
});
