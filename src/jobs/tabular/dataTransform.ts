import { defineJobType } from '../defineJobType.js';
import { expressionProblem } from './lib/expressions.js';
import {
  coreContext,
  distinctPaths,
  errorPolicy,
  fieldName,
  prepareOutputs,
  recordsIn,
  recordsOut,
} from './processKit.js';
import { TABULAR_TYPES } from './typeDefaults.js';

const TARGETS = ['int', 'float', 'bool', 'date', 'string'] as const;

/** Built-in job type `data_transform`: rename, convert, default, compute and drop fields of an NDJSON file. */
export default defineJobType({
  name: 'data_transform',
  description:
    'Rewrites each record of an NDJSON file: rename, defaults, convert (int, float, bool, date, string), computed fields (MongoDB aggregation expressions), drop; a value that does not convert follows its policy: fail, null, skip the row or quarantine it.',
  schemas: (z) => {
    const target = z.enum(TARGETS, { error: `must be one of ${TARGETS.join(', ')}` });
    const conversion = z.union(
      [
        target,
        z.strictObject({
          to: target,
          on_error: errorPolicy()
            .optional()
            .describe('this field\'s policy (default: the job\'s "on_error")'),
          format: z
            .enum(['iso', 'epoch_ms', 'epoch_s'])
            .optional()
            .describe('date: an ISO-8601 UTC string (default), or epoch milliseconds or seconds'),
          epoch_unit: z
            .enum(['ms', 's'])
            .optional()
            .describe("date: the unit of a number read as a date (default ms, as MongoDB's $toDate)"),
        }),
      ],
      {
        // An object names what in it is wrong; anything else is told the two shapes allowed.
        error: (iss) => {
          const inObject = iss.input !== null && typeof iss.input === 'object' && !Array.isArray(iss.input);
          const sub = inObject ? iss.errors?.[1]?.[0] : undefined;
          if (sub) {
            const at = sub.path.length ? `${sub.path.join('.')}: ` : '';
            return `${at}${sub.message}`;
          }
          return `must be one of ${TARGETS.join(', ')}, or { "to": one of those, "on_error", "format", "epoch_unit" }`;
        },
      },
    );
    const expression = z.unknown().superRefine((expr, ctx) => {
      const problem = expressionProblem(expr);
      if (problem)
        ctx.addIssue({ code: 'custom', message: `not a valid MongoDB aggregation expression: ${problem}` });
    });
    return {
      input: z
        .strictObject({
          input: recordsIn('the NDJSON records to transform'),
          output: recordsOut('where the transformed records go (NDJSON, written whole or not at all)'),
          quarantine: recordsOut('where quarantined rows go, each with its errors (NDJSON)').optional(),
          rename: z
            .record(fieldName(), fieldName())
            .default({})
            .describe('old name → new name, applied first'),
          defaults: z
            .record(fieldName(), z.json())
            .default({})
            .describe('field → value given to records where the field is missing or null'),
          convert: z
            .record(fieldName(), conversion)
            .default({})
            .describe(
              'field → "int" | "float" | "bool" | "date" | "string", or { to, on_error, format, epoch_unit }',
            ),
          on_error: errorPolicy().default('fail').describe("the conversions' policy when a field gives none"),
          compute: z
            .record(fieldName(), expression)
            .default({})
            .describe('field → MongoDB aggregation expression, e.g. { "$multiply": ["$price", "$qty"] }'),
          compute_on_error: errorPolicy()
            .default('fail')
            .describe('what an expression that fails on a row does'),
          drop: z
            .array(fieldName())
            .default([])
            .describe('fields removed last (computed fields may use them)'),
        })
        .superRefine((v, ctx) => {
          distinctPaths({ input: v.input, output: v.output, quarantine: v.quarantine }, ctx);
          if (v.quarantine !== undefined) return;
          const policies = [
            ['on_error', v.on_error],
            ['compute_on_error', v.compute_on_error],
            ...Object.entries(v.convert).map(([f, c]) => [
              `convert.${f}.on_error`,
              typeof c === 'string' ? undefined : c.on_error,
            ]),
          ];
          const q = policies.find(([, p]) => p === 'quarantine');
          if (q)
            ctx.addIssue({
              code: 'custom',
              path: ['quarantine'],
              message: `is required: ${q[0]} is "quarantine"`,
            });
        }),
      output: z.strictObject({
        input: z.string(),
        output: z.string(),
        quarantine: z.string().nullable(),
        rows_read: z.number().int().min(0),
        rows_written: z.number().int().min(0),
        rows_skipped: z.number().int().min(0),
        rows_quarantined: z.number().int().min(0),
        errors_by_field: z.record(z.string(), z.number().int().min(0)),
        duration_ms: z.number().min(0),
      }),
    };
  },
  defaults: TABULAR_TYPES.data_transform,
  handler: async (input, ctx) => {
    const started = Date.now();
    const { transformRecords } = await import('./lib/transform.js');
    const [output, quarantine] = await prepareOutputs(ctx, [
      input.output,
      ...(input.quarantine ? [input.quarantine] : []),
    ]);
    const convert = Object.fromEntries(
      Object.entries(input.convert).map(([f, c]) => [
        f,
        typeof c === 'string'
          ? { to: c, on_error: input.on_error }
          : { ...c, on_error: c.on_error ?? input.on_error },
      ]),
    );
    const r = await transformRecords(
      {
        input: input.input,
        output: output!,
        quarantine,
        rename: input.rename,
        defaults: input.defaults,
        convert,
        compute: input.compute,
        compute_on_error: input.compute_on_error,
        drop: input.drop,
      },
      coreContext(ctx),
    );
    return {
      input: input.input,
      output: input.output,
      quarantine: input.quarantine ?? null,
      ...r,
      duration_ms: Date.now() - started,
    };
  },
});
