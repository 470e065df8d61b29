/**
 * data_transform's core: each record of an NDJSON file goes through rename → defaults → convert →
 * compute → drop, into another NDJSON file. A value that does not convert (or a computed field whose
 * expression fails) follows its field's policy: fail the job, set null, skip the row, or quarantine it
 * (the original row, with its errors, to a file of its own).
 */
import type { CoreContext } from '../../lib/context.js';
import { DataInputError } from '../../lib/errors.js';
import { RecordWriter, type DataRecord } from '../records.js';
import { convertValue, type ConvertOptions } from './convert.js';
import { evaluate } from './expressions.js';
import { asJobError, recordsWithProgress, shortValue } from './fileRun.js';

export type ErrorPolicy = 'fail' | 'null' | 'skip' | 'quarantine';

export interface TransformSpec {
  /** Resolved paths. */
  input: string;
  output: string;
  quarantine?: string | undefined;
  rename: Record<string, string>;
  defaults: Record<string, unknown>;
  convert: Record<string, ConvertOptions & { on_error: ErrorPolicy }>;
  compute: Record<string, unknown>;
  compute_on_error: ErrorPolicy;
  drop: string[];
}

export interface TransformResult {
  rows_read: number;
  rows_written: number;
  rows_skipped: number;
  rows_quarantined: number;
  /** Values that did not convert or compute, by field (those set to null included). */
  errors_by_field: Record<string, number>;
}

interface FieldError {
  field: string;
  value: unknown;
  message: string;
  policy: ErrorPolicy;
}

// What happens to a row with several errors: the strictest policy among them.
const RANK: Record<ErrorPolicy, number> = { null: 0, skip: 1, quarantine: 2, fail: 3 };

export async function transformRecords(spec: TransformSpec, ctx: CoreContext): Promise<TransformResult> {
  const out = new RecordWriter(spec.output);
  const quarantine = spec.quarantine ? new RecordWriter(spec.quarantine) : null;
  const result: TransformResult = {
    rows_read: 0,
    rows_written: 0,
    rows_skipped: 0,
    rows_quarantined: 0,
    errors_by_field: {},
  };
  const renames = Object.entries(spec.rename);
  const defaults = Object.entries(spec.defaults);
  const converts = Object.entries(spec.convert);
  const computes = Object.entries(spec.compute);
  try {
    for await (const { record: original, line } of recordsWithProgress(spec.input, ctx, 'data_transform')) {
      result.rows_read += 1;
      const rec: DataRecord = { ...original };
      const errors: FieldError[] = [];
      for (const [from, to] of renames) {
        if (Object.hasOwn(rec, from)) {
          rec[to] = rec[from];
          delete rec[from];
        }
      }
      for (const [field, value] of defaults) {
        if (rec[field] === undefined || rec[field] === null) rec[field] = value;
      }
      for (const [field, opts] of converts) {
        if (!Object.hasOwn(rec, field)) continue;
        const c = convertValue(rec[field], opts);
        if (c.ok) {
          rec[field] = c.value;
        } else {
          errors.push({
            field,
            value: rec[field],
            message: `${c.message} (to ${opts.to})`,
            policy: opts.on_error,
          });
          rec[field] = null;
        }
      }
      // As MongoDB's $addFields: every expression sees the record as it was before any of them.
      const computed: [string, unknown][] = [];
      for (const [field, expr] of computes) {
        try {
          computed.push([field, evaluate(rec, expr)]);
        } catch (err) {
          errors.push({
            field,
            value: undefined,
            message: (err as Error).message,
            policy: spec.compute_on_error,
          });
          computed.push([field, null]);
        }
      }
      for (const [field, value] of computed) {
        if (value === undefined) delete rec[field];
        else rec[field] = value;
      }
      for (const field of spec.drop) delete rec[field];

      let worst: ErrorPolicy = 'null';
      for (const e of errors) {
        result.errors_by_field[e.field] = (result.errors_by_field[e.field] ?? 0) + 1;
        if (RANK[e.policy] > RANK[worst]) worst = e.policy;
      }
      if (errors.length > 0 && worst === 'fail') {
        const e = errors.find((x) => x.policy === 'fail')!;
        throw new DataInputError(
          `data_transform: ${spec.input}, line ${line}: field "${e.field}"${
            e.value === undefined ? '' : ` = ${shortValue(e.value)}`
          }: ${e.message} (its on_error policy is fail; null, skip or quarantine keep the job going)`,
        );
      }
      if (errors.length > 0 && worst === 'skip') {
        result.rows_skipped += 1;
      } else if (errors.length > 0 && worst === 'quarantine') {
        result.rows_quarantined += 1;
        await quarantine!.write({
          line,
          record: original,
          errors: errors.map((e) => ({ field: e.field, message: e.message })),
        });
      } else {
        result.rows_written += 1;
        await out.write(rec);
      }
    }
    await out.commit();
    await quarantine?.commit();
  } catch (err) {
    await out.abort();
    await quarantine?.abort();
    throw asJobError(err, ctx, 'data_transform');
  }
  ctx.progress(100, `${result.rows_written} of ${result.rows_read} rows written`);
  return result;
}
