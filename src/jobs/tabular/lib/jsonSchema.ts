/**
 * record_validation's JSON Schemas, compiled by ajv (draft-07 and 2019-09 keywords, formats from
 * ajv-formats). Strict about the schema itself, so a misspelt keyword ("minimun") or an unknown format
 * is refused when the job is enqueued instead of silently checking nothing; lenient where strictness
 * would refuse ordinary schemas (a `pattern` without `"type": "string"`, `required` without
 * `properties`).
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import formats, { type FormatsPlugin } from 'ajv-formats';

// ajv-formats is CommonJS: under NodeNext its default import is the module object, whose `default` is
// the plugin.
const addFormats = (formats as unknown as { default: FormatsPlugin }).default;

function newAjv(): Ajv {
  const ajv = new Ajv({
    allErrors: true,
    strict: true,
    strictTypes: false,
    strictTuples: false,
    strictRequired: false,
    // A pattern is a user's regular expression: unicode mode, as JSON Schema specifies.
    unicodeRegExp: true,
  });
  addFormats(ajv);
  return ajv;
}

/** The schema's validator, or throws with ajv's reason (naming the place in the schema). */
export function compileSchema(schema: unknown): ValidateFunction {
  if (schema === null || typeof schema !== 'object' || Array.isArray(schema)) {
    throw new Error('must be a JSON Schema object, e.g. { "type": "object", "required": ["id"] }');
  }
  return newAjv().compile(schema);
}

/** What is wrong with a schema, or null. */
export function schemaProblem(schema: unknown): string | null {
  try {
    compileSchema(schema);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

export interface RowError {
  /** The JSON Schema keyword that failed: required, type, minimum, maximum, pattern, enum, ... */
  keyword: string;
  /** JSON Pointer of the field ("/price"); for required, of the missing field. */
  path: string;
  message: string;
}

/** ajv's errors as rules: a missing property is reported at its own path, as a field's other errors are. */
export function rowErrors(errors: readonly ErrorObject[]): RowError[] {
  return errors.map((e) => {
    const missing =
      e.keyword === 'required' ? (e.params as { missingProperty?: string }).missingProperty : undefined;
    const path =
      missing === undefined
        ? e.instancePath
        : `${e.instancePath}/${missing.replace(/~/g, '~0').replace(/\//g, '~1')}`;
    return { keyword: e.keyword, path: path || '/', message: e.message ?? e.keyword };
  });
}
