import { defineJobType } from '../defineJobType.js';
import { DataJobError } from '../lib/errors.js';
import { schemaProblem } from './lib/jsonSchema.js';
import { coreContext, distinctPaths, prepareOutputs, recordsIn, recordsOut } from './processKit.js';
import { TABULAR_TYPES } from './typeDefaults.js';

/** Built-in job type `record_validation`: the records of an NDJSON file checked against a JSON Schema. */
export default defineJobType({
  name: 'record_validation',
  description:
    'Checks each record of an NDJSON file against a JSON Schema (required, type, minimum, maximum, pattern, enum, formats, ...): valid rows to the output, invalid rows with their errors to another file; counts invalid rows per rule (keyword and field path).',
  schemas: (z) => ({
    input: z
      .strictObject({
        input: recordsIn('the NDJSON records to check'),
        output: recordsOut('where the valid records go (NDJSON)'),
        invalid_output: recordsOut('where the invalid records go, each as { line, record, errors } (NDJSON)'),
        schema: z
          .json()
          .superRefine((s, ctx) => {
            const problem = schemaProblem(s);
            if (problem) ctx.addIssue({ code: 'custom', message: `not a valid JSON Schema: ${problem}` });
          })
          .describe('a JSON Schema (draft-07 keywords) each record must match'),
        fail_on_invalid: z
          .boolean()
          .default(false)
          .describe('fail the job (not retried) when any row is invalid; both files are written first'),
      })
      .superRefine((v, ctx) =>
        distinctPaths({ input: v.input, output: v.output, invalid_output: v.invalid_output }, ctx),
      ),
    output: z.strictObject({
      input: z.string(),
      output: z.string(),
      invalid_output: z.string(),
      rows: z.number().int().min(0),
      valid: z.number().int().min(0),
      invalid: z.number().int().min(0),
      rules: z
        .array(z.strictObject({ keyword: z.string(), path: z.string(), rows: z.number().int().min(0) }))
        .describe(
          'invalid rows per rule (JSON Schema keyword, JSON Pointer of the field), most frequent first',
        ),
      other_rules_rows: z.number().int().min(0).describe('rows breaking rules beyond the first 100 listed'),
      duration_ms: z.number().min(0),
    }),
  }),
  defaults: TABULAR_TYPES.record_validation,
  handler: async (input, ctx) => {
    const started = Date.now();
    const { validateRecords } = await import('./lib/validateRecords.js');
    const [output, invalid] = await prepareOutputs(ctx, [input.output, input.invalid_output]);
    const r = await validateRecords(
      { input: input.input, output: output!, invalid: invalid!, schema: input.schema },
      coreContext(ctx),
    );
    if (input.fail_on_invalid && r.invalid > 0) {
      const top = r.rules
        .slice(0, 5)
        .map((x) => `${x.keyword} at ${x.path}: ${x.rows}`)
        .join('; ');
      throw new DataJobError(
        'RecordsInvalidError',
        `record_validation: ${r.invalid} of ${r.rows} rows are invalid (${top}); they are in ${input.invalid_output}`,
        { retryable: false, details: r },
      );
    }
    return {
      input: input.input,
      output: input.output,
      invalid_output: input.invalid_output,
      ...r,
      duration_ms: Date.now() - started,
    };
  },
});
