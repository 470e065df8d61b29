import { mkdir, rm } from 'node:fs/promises';
import { defineJobType } from '../defineJobType.js';
import { dataPath } from '../dataPath.js';
import { cleanStaleTemps, tempSibling, writeFileAtomic } from '../lib/atomic.js';
import { distinctPaths } from './processKit.js';
import { TABULAR_TYPES } from './typeDefaults.js';

/** Built-in job type `statistical_analysis`: exact descriptive statistics of an NDJSON file's numeric fields. */
export default defineJobType({
  name: 'statistical_analysis',
  description:
    'Describes the numeric fields of an NDJSON record file: count, missing, sum, mean, sample and population variance and standard deviation, min, max, median, quantiles (numpy linear) and equal-width histograms; exact, in bounded memory (values spill to disk past memory_values).',
  schemas: (z) => {
    const histogram = z.strictObject({ edges: z.array(z.number()), counts: z.array(z.number().int()) });
    const fieldStatistics = z.strictObject({
      count: z.number().int(),
      missing: z.number().int(),
      non_numeric: z.number().int(),
      sum: z.number().nullable(),
      mean: z.number().nullable(),
      variance_sample: z.number().nullable(),
      variance_population: z.number().nullable(),
      std_sample: z.number().nullable(),
      std_population: z.number().nullable(),
      min: z.number().nullable(),
      max: z.number().nullable(),
      median: z.number().nullable(),
      quantiles: z.array(z.strictObject({ q: z.number(), value: z.number().nullable() })),
      histogram: histogram.nullable(),
    });
    return {
      input: z
        .strictObject({
          source: dataPath({
            mode: 'read',
            kind: 'file',
            mustExist: true,
            description: 'the NDJSON record file',
          }),
          fields: z
            .array(z.string().min(1))
            .min(1)
            .max(1000)
            .optional()
            .describe('top-level fields to describe (default: every field holding a number)'),
          quantiles: z
            .array(z.number().min(0).max(1))
            .max(100)
            .default([0.25, 0.5, 0.75])
            .describe('quantiles to report, each in [0, 1]'),
          bins: z.number().int().min(1).max(1000).default(10).describe('histogram bins per field'),
          output: dataPath({
            mode: 'write',
            description:
              'a JSON file to write the statistics to (spill files go beside it while the job runs)',
          }).optional(),
          memory_values: z
            .number()
            .int()
            .min(8192)
            .max(1 << 28)
            .default(4_000_000)
            .describe('numbers (8 bytes each, all fields together) kept in memory before spilling to disk'),
          max_fields: z
            .number()
            .int()
            .min(1)
            .max(10_000)
            .default(500)
            .describe('most fields found without params.fields'),
        })
        .superRefine((v, ctx) => distinctPaths({ source: v.source, output: v.output }, ctx)),
      output: z.strictObject({
        source: z.string(),
        records: z.number().int(),
        fields: z.record(z.string(), fieldStatistics),
        spilled: z.array(z.string()),
        output: z.string().nullable(),
      }),
    };
  },
  defaults: TABULAR_TYPES.statistical_analysis,
  // The core loads when a job runs, not when jobctl reads the schemas.
  handler: async (input, ctx) => {
    const { computeStatistics } = await import('./lib/statistics.js');
    const out = input.output ? await ctx.checkWrite(input.output) : null;
    // Spill files live in a temporary sibling of the output: a run that died leaves them under a
    // name the next run recognises (a dead pid) and removes.
    if (out) await cleanStaleTemps(out);
    const spill = out ? tempSibling(out) : null;
    if (spill) await mkdir(spill);
    const result = await computeStatistics(
      {
        source: input.source,
        ...(input.fields ? { fields: input.fields } : {}),
        quantiles: input.quantiles,
        bins: input.bins,
        memoryValues: input.memory_values,
        maxFields: input.max_fields,
        ...(spill ? { spillDir: spill } : {}),
      },
      { signal: ctx.signal, progress: ctx.progress, log: (m, e) => ctx.logger.info(m, e) },
    ).finally(() => (spill ? rm(spill, { recursive: true, force: true }) : undefined));
    const summary = { source: input.source, ...result, output: out };
    if (out) await writeFileAtomic(await ctx.checkWrite(out), JSON.stringify(summary, null, 2) + '\n');
    ctx.progress(100, `described ${Object.keys(result.fields).length} fields of ${result.records} records`);
    return summary;
  },
});
