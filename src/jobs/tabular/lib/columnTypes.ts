/**
 * Column types of file_ingestion: text from a CSV cell (or a JSON value) to the value written. An empty
 * cell of a typed column is null, never an error; anything else that does not convert is a field error
 * naming the field, the value and what the type allows.
 */
export const COLUMN_TYPES = ['string', 'int', 'float', 'bool', 'date', 'json'] as const;
export type ColumnType = (typeof COLUMN_TYPES)[number];

/** A value that does not convert (a class, so a converted JSON value can never pass for one). */
export class FieldError {
  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly type: ColumnType,
    readonly reason: string,
  ) {}
}

const TRUE = new Set(['true', 't', 'yes', 'y', '1']);
const FALSE = new Set(['false', 'f', 'no', 'n', '0']);
const INT = /^[+-]?\d+$/;
const FLOAT = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

const ALLOWED: Record<ColumnType, string> = {
  string: 'any text',
  int: 'an integer within ±2^53 (e.g. -42)',
  float: 'a decimal number (e.g. 3.25, -1e-3)',
  bool: 'true/false, t/f, yes/no, y/n or 1/0',
  date: 'a date or date-time (ISO 8601, e.g. 2024-05-01 or 2024-05-01T12:00:00Z)',
  json: 'a JSON value',
};

/** The converted value, or a FieldError. */
export function convertField(field: string, value: unknown, type: ColumnType): unknown {
  if (value === null || value === undefined || value === '') return null;
  const fail = (): FieldError => new FieldError(field, value, type, `must be ${ALLOWED[type]}`);
  switch (type) {
    case 'string':
      return typeof value === 'string' ? value : JSON.stringify(value);
    case 'int': {
      if (typeof value === 'number') return Number.isSafeInteger(value) ? value : fail();
      if (typeof value !== 'string') return fail();
      const t = value.trim();
      if (!INT.test(t)) return fail();
      const n = Number(t);
      return Number.isSafeInteger(n) ? n : fail();
    }
    case 'float': {
      if (typeof value === 'number') return value;
      if (typeof value !== 'string') return fail();
      const t = value.trim();
      return FLOAT.test(t) ? Number(t) : fail();
    }
    case 'bool': {
      if (typeof value === 'boolean') return value;
      // The common spellings first, without trimming and lower-casing.
      if (value === 'true') return true;
      if (value === 'false') return false;
      const t = String(value).trim().toLowerCase();
      return TRUE.has(t) ? true : FALSE.has(t) ? false : fail();
    }
    case 'date': {
      if (typeof value !== 'string' || !/^\d{4}-\d{2}-\d{2}/.test(value.trim())) return fail();
      const ms = Date.parse(value.trim());
      return Number.isNaN(ms) ? fail() : new Date(ms).toISOString();
    }
    case 'json': {
      if (typeof value !== 'string') return value;
      try {
        return JSON.parse(value) as unknown;
      } catch {
        return fail();
      }
    }
  }
}

const NONE: readonly FieldError[] = Object.freeze([]);
const lists = new WeakMap<object, ReadonlyArray<readonly [string, ColumnType]>>();

/** The fields and types of `types`, listed once per types object rather than once per record. */
function typeList(types: Readonly<Record<string, ColumnType>>): ReadonlyArray<readonly [string, ColumnType]> {
  let list = lists.get(types);
  if (!list) lists.set(types, (list = Object.entries(types)));
  return list;
}

/** Converts the typed fields of `record` in place; returns the field errors (none: converted). */
export function convertRecord(
  record: Record<string, unknown>,
  types: Readonly<Record<string, ColumnType>> | undefined,
): readonly FieldError[] {
  if (!types) return NONE;
  let errors: FieldError[] | null = null;
  for (const [field, type] of typeList(types)) {
    const v = convertField(field, record[field], type);
    if (v instanceof FieldError) (errors ??= []).push(v);
    else if (v !== null || field in record) record[field] = v;
  }
  return errors ?? NONE;
}
