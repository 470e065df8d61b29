/**
 * record_validation's core: each record of an NDJSON file is checked against a JSON Schema; valid rows
 * go to the output, invalid ones (with their errors) to a file of their own, and the result counts
 * invalid rows per rule (keyword and field path).
 */
import type { CoreContext } from '../../lib/context.js';
import { RecordWriter } from '../records.js';
import { asJobError, recordsWithProgress } from './fileRun.js';
import { compileSchema, rowErrors } from './jsonSchema.js';

export interface ValidateSpec {
  /** Resolved paths. */
  input: string;
  output: string;
  invalid: string;
  schema: unknown;
  /** Rules counted one by one; further ones are summed in `other_rules_rows` (bounded result). */
  maxRules?: number;
}

export interface RuleCount {
  keyword: string;
  path: string;
  rows: number;
}

export interface ValidateResult {
  rows: number;
  valid: number;
  invalid: number;
  /** Invalid rows per rule, most frequent first. */
  rules: RuleCount[];
  /** Rows failing rules beyond the first `maxRules` distinct ones (counted once per rule). */
  other_rules_rows: number;
}

export async function validateRecords(spec: ValidateSpec, ctx: CoreContext): Promise<ValidateResult> {
  const validate = compileSchema(spec.schema);
  const maxRules = spec.maxRules ?? 100;
  const out = new RecordWriter(spec.output);
  const bad = new RecordWriter(spec.invalid);
  const rules = new Map<string, RuleCount>();
  const result: ValidateResult = { rows: 0, valid: 0, invalid: 0, rules: [], other_rules_rows: 0 };
  try {
    for await (const { record, line } of recordsWithProgress(spec.input, ctx, 'record_validation')) {
      result.rows += 1;
      if (validate(record)) {
        result.valid += 1;
        await out.write(record);
        continue;
      }
      result.invalid += 1;
      const errors = rowErrors(validate.errors ?? []);
      // A row counts once per rule, however many times it breaks it.
      const broken = new Set(errors.map((e) => `${e.keyword}\u0000${e.path}`));
      for (const id of broken) {
        const r = rules.get(id);
        if (r) {
          r.rows += 1;
        } else if (rules.size < maxRules) {
          const [keyword, path] = id.split('\u0000') as [string, string];
          rules.set(id, { keyword, path, rows: 1 });
        } else {
          result.other_rules_rows += 1;
        }
      }
      await bad.write({ line, record, errors });
    }
    await out.commit();
    await bad.commit();
  } catch (err) {
    await out.abort();
    await bad.abort();
    throw asJobError(err, ctx, 'record_validation');
  }
  result.rules = [...rules.values()].sort(
    (a, b) => b.rows - a.rows || a.path.localeCompare(b.path) || a.keyword.localeCompare(b.keyword),
  );
  ctx.progress(100, `${result.invalid} of ${result.rows} rows invalid`);
  return result;
}
