import { defineJobType } from '../defineJobType.js';
import { dataPath } from '../dataPath.js';
import { TABULAR_TYPES } from './typeDefaults.js';

/** Built-in job type `report_generation`: a self-contained HTML report (and optionally a PDF). */
export default defineJobType({
  name: 'report_generation',
  description:
    "Writes a self-contained HTML report (inline CSS and SVG charts, no script, nothing fetched when viewed) of statistics files, NDJSON tables and the results of the job's workflow dependencies; optionally prints it to PDF with headless chromium.",
  schemas: (z) => {
    const table = z.strictObject({
      path: dataPath({ mode: 'read', kind: 'file', mustExist: true, description: 'an NDJSON record file' }),
      title: z.string().min(1).max(200).optional(),
      max_rows: z
        .number()
        .int()
        .min(1)
        .max(10_000)
        .default(50)
        .describe('rows shown (the report counts them all)'),
      columns: z
        .array(z.string().min(1))
        .min(1)
        .max(100)
        .optional()
        .describe('columns shown (default: those of the rows shown)'),
      chart: z
        .strictObject({
          type: z.enum(['bar', 'line']),
          x: z.string().min(1).describe('the field labelling each row'),
          y: z.string().min(1).describe('the numeric field charted'),
        })
        .optional()
        .describe('a chart of the rows shown: one bar or point per row'),
    });
    return {
      input: z
        .strictObject({
          title: z.string().min(1).max(200).default('Report'),
          output: dataPath({ mode: 'write', description: 'the HTML file to write' }),
          statistics: z
            .array(dataPath({ mode: 'read', kind: 'file', mustExist: true }))
            .max(100)
            .default([])
            .describe('JSON files written by statistical_analysis (params.output)'),
          tables: z.array(table).max(100).default([]).describe('NDJSON record files shown as tables'),
          include_dependencies: z
            .boolean()
            .default(true)
            .describe("in a workflow, a section for each dependency's result"),
          pdf: dataPath({
            mode: 'write',
            description:
              'a PDF of the report, printed by chromium (settings programs.chromium.path, default chromium on PATH)',
          }).optional(),
        })
        .superRefine((v, ctx) => {
          // A file read may be read twice (one table, two charts); a file written must be none of them.
          const read = new Map<string, Array<string | number>>();
          v.statistics.forEach((p, i) => read.set(p, ['statistics', i]));
          v.tables.forEach((t, i) => read.set(t.path, ['tables', i, 'path']));
          for (const [name, path] of [
            ['output', v.output],
            ['pdf', v.pdf],
          ] as const) {
            const same = path === undefined ? undefined : read.get(path);
            if (same) {
              ctx.addIssue({
                code: 'custom',
                path: [name],
                message: `is the same file as ${same.join('.')}: give another path`,
              });
            }
          }
          if (v.pdf !== undefined && v.pdf === v.output) {
            ctx.addIssue({
              code: 'custom',
              path: ['pdf'],
              message: 'is the same file as output: give another path',
            });
          }
        }),
      output: z.strictObject({
        output: z.string(),
        bytes: z.number().int(),
        sections: z.number().int(),
        charts: z.number().int(),
        pdf: z.string().nullable(),
        pdf_bytes: z.number().int().nullable(),
      }),
    };
  },
  defaults: TABULAR_TYPES.report_generation,
  // The core loads when a job runs, not when jobctl reads the schemas.
  handler: async (input, ctx) => {
    const { generateReport } = await import('./lib/report.js');
    const { handedPrograms } = await import('../imaging/programTemplate.js');
    const { dataEnvFor } = await import('../data/dataEnv.js');
    const killGraceMs = dataEnvFor(ctx.dataDirs).killGraceMs;
    const result = await generateReport(
      {
        title: input.title,
        output: await ctx.checkWrite(input.output),
        statistics: input.statistics,
        tables: input.tables,
        ...(input.include_dependencies && ctx.dependencies ? { dependencies: ctx.dependencies } : {}),
        ...(input.pdf
          ? {
              pdf: {
                path: await ctx.checkWrite(input.pdf),
                program: handedPrograms().chromium?.path ?? 'chromium',
                ...(killGraceMs !== undefined ? { killGraceMs } : {}),
              },
            }
          : {}),
        now: new Date(),
      },
      { signal: ctx.signal, progress: ctx.progress, log: (m, e) => ctx.logger.info(m, e) },
    );
    ctx.progress(100, `wrote ${result.output}`);
    return result;
  },
});
