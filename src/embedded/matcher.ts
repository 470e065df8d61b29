/**
 * Query filters compiled once per command into closures over documents, with MongoDB's
 * semantics: implicit array traversal along dotted paths, type bracketing of comparisons,
 * numbers compared by value across int/long/double/decimal, `$type` telling those apart,
 * and an optional collation for every string comparison. Operators this compiler does not
 * know are handed to mingo for the whole filter (see mql.ts).
 */
import type { Document } from 'bson';
import { CommandError } from './errors.js';
import {
  compareValues,
  isPlainObject,
  numericValue,
  typeRank,
  Rank,
  type StringCompare,
} from './bsonOrder.js';
import type { Collation } from './collation.js';
import { isInt32Number } from './numbers.js';

export type DocPredicate = (doc: Document) => boolean;
type ValuePredicate = (v: unknown) => boolean;

/** Thrown while compiling when the filter needs the general (mingo) engine. */
export class NeedsFallback extends Error {}

export interface CompileOptions {
  collation?: Collation | undefined;
  /** Compiles a `$expr` clause (evaluated by the aggregation expression engine). */
  expr?: (expr: unknown) => DocPredicate;
}

const binary: StringCompare = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

export function compileDocFilter(filter: Document, opts: CompileOptions = {}): DocPredicate {
  return new Compiler(opts).filter(filter);
}

class Compiler {
  private readonly strCmp: StringCompare;
  private readonly collated: boolean;

  constructor(private readonly opts: CompileOptions) {
    this.strCmp = opts.collation?.compare ?? binary;
    this.collated = opts.collation !== undefined;
  }

  filter(filter: Document): DocPredicate {
    const preds: DocPredicate[] = [];
    for (const key of Object.keys(filter)) {
      const cond = filter[key] as unknown;
      if (key.startsWith('$')) preds.push(this.topLevel(key, cond));
      else preds.push(this.field(key, cond));
    }
    return all(preds);
  }

  private topLevel(op: string, arg: unknown): DocPredicate {
    switch (op) {
      case '$and':
      case '$or':
      case '$nor': {
        if (!Array.isArray(arg) || arg.length === 0)
          throw new CommandError('BadValue', `${op} argument must be a non-empty array`);
        const subs = arg.map((x) => {
          if (!isPlainObject(x))
            throw new CommandError('BadValue', `${op} argument's entries must be objects`);
          return this.filter(x);
        });
        if (op === '$and') return all(subs);
        if (op === '$or') return (d) => subs.some((p) => p(d));
        return (d) => !subs.some((p) => p(d));
      }
      case '$comment':
        return () => true;
      case '$alwaysTrue':
        return () => true;
      case '$alwaysFalse':
        return () => false;
      case '$expr':
        if (!this.opts.expr) throw new NeedsFallback(op);
        return this.opts.expr(arg);
      default:
        throw new NeedsFallback(op);
    }
  }

  private field(path: string, cond: unknown): DocPredicate {
    let test: ValuePredicate;
    let negate = false;
    if (isOperatorObject(cond)) {
      const ops = Object.keys(cond);
      // Negative operators hold when no reached value satisfies their positive form.
      if (ops.length === 1 && (ops[0] === '$ne' || ops[0] === '$nin' || ops[0] === '$not')) {
        const op = ops[0];
        negate = true;
        test =
          op === '$not' ? this.notInner(cond.$not) : op === '$ne' ? this.eq(cond.$ne) : this.in(cond.$nin);
      } else if (ops.length === 1 && ops[0] === '$exists') {
        const want = truthy(cond.$exists);
        const reach = reached(path);
        return want ? reach : (d) => !reach(d);
      } else {
        return all(ops.map((op) => this.fieldOp(path, op, cond[op], cond)));
      }
    } else {
      test = this.equalityLiteral(cond);
    }
    const parts = path.split('.');
    if (parts.length === 1) {
      if (negate) return (d) => !test(d[path]);
      return (d) => test(d[path]);
    }
    const p = anyValue(parts, test);
    return negate ? (d) => !p(d) : p;
  }

  private fieldOp(path: string, op: string, arg: unknown, whole: Document): DocPredicate {
    if (op === '$exists') {
      const reach = reached(path);
      return truthy(arg) ? reach : (d) => !reach(d);
    }
    if (op === '$options') {
      if (!('$regex' in whole)) throw new CommandError('BadValue', '$options needs a $regex');
      return () => true;
    }
    let test: ValuePredicate;
    let negate = false;
    switch (op) {
      case '$ne':
        negate = true;
        test = this.eq(arg);
        break;
      case '$nin':
        negate = true;
        test = this.in(arg);
        break;
      case '$not':
        negate = true;
        test = this.notInner(arg);
        break;
      default:
        test = this.valueOp(op, arg, whole);
    }
    const parts = path.split('.');
    const p: DocPredicate = parts.length === 1 ? (d) => test(d[path]) : anyValue(parts, test);
    return negate ? (d) => !p(d) : p;
  }

  /** The positive predicate of one operator, applied to a reached value (arrays included). */
  private valueOp(op: string, arg: unknown, whole: Document): ValuePredicate {
    switch (op) {
      case '$eq':
        return this.eq(arg);
      case '$in':
        return this.in(arg);
      case '$gt':
      case '$gte':
      case '$lt':
      case '$lte':
        return this.range(op, arg);
      case '$regex':
        return expand(regexTest(arg, whole.$options));
      case '$type':
        return typeTest(arg);
      case '$size': {
        const n = Number(numericValue(arg));
        if (!Number.isInteger(n) || n < 0)
          throw new CommandError('BadValue', `$size needs a non-negative integer`);
        return (v) => Array.isArray(v) && v.length === n;
      }
      case '$all':
        return this.allOf(arg);
      case '$elemMatch':
        return this.elemMatch(arg);
      case '$mod':
        return expand(modTest(arg));
      case '$comment':
        return () => true;
      case '$bitsAllSet':
      case '$bitsAnySet':
      case '$bitsAllClear':
      case '$bitsAnyClear':
        throw new NeedsFallback(op);
      default:
        throw new CommandError('BadValue', `unknown operator: ${op}`);
    }
  }

  private notInner(arg: unknown): ValuePredicate {
    if (arg instanceof RegExp || typeRank(arg) === Rank.Regex) return expand(regexTest(arg, undefined));
    if (!isPlainObject(arg) || Object.keys(arg).length === 0)
      throw new CommandError('BadValue', '$not needs a regex or a document');
    const tests = Object.keys(arg).map((op) => {
      if (!op.startsWith('$')) throw new CommandError('BadValue', `unknown operator: ${op}`);
      if (op === '$options') return () => true;
      if (op === '$ne') {
        const t = this.eq(arg.$ne);
        return (v: unknown) => !t(v);
      }
      if (op === '$nin') {
        const t = this.in(arg.$nin);
        return (v: unknown) => !t(v);
      }
      if (op === '$exists') {
        const want = truthy(arg.$exists);
        return (v: unknown) => (v !== undefined) === want;
      }
      return this.valueOp(op, arg[op], arg);
    });
    return (v) => tests.every((t) => t(v));
  }

  /** A field compared with a literal: a regex literal matches strings; null matches missing too. */
  private equalityLiteral(cond: unknown): ValuePredicate {
    if (cond instanceof RegExp || typeRank(cond) === Rank.Regex) {
      const re = expand(regexTest(cond, undefined));
      const same = this.eq(cond);
      return (v) => re(v) || same(v);
    }
    return this.eq(cond);
  }

  /** Equality with MongoDB's array rule: the whole value or any element. */
  eq(operand: unknown): ValuePredicate {
    const scalar = this.scalarEq(operand);
    return (v) => scalar(v) || (Array.isArray(v) && v.some(scalar));
  }

  private scalarEq(operand: unknown): ValuePredicate {
    if (operand === null || operand === undefined) return (x) => x === null || x === undefined;
    if (typeof operand === 'string' && !this.collated)
      return (x) =>
        x === operand || (typeRank(x) === Rank.String && typeof x !== 'string' && String(x) === operand);
    if (typeof operand === 'number') {
      if (Number.isNaN(operand))
        return (x) => typeRank(x) === Rank.Number && Number.isNaN(Number(numericValue(x)));
      return (x) =>
        x === operand ||
        (typeof x === 'object' &&
          x !== null &&
          typeRank(x) === Rank.Number &&
          compareValues(x, operand) === 0);
    }
    if (typeof operand === 'boolean') return (x) => x === operand;
    const rank = typeRank(operand);
    const strCmp = this.strCmp;
    return (x) => typeRank(x) === rank && compareValues(x, operand, strCmp) === 0;
  }

  in(arg: unknown): ValuePredicate {
    if (!Array.isArray(arg)) throw new CommandError('BadValue', '$in needs an array');
    const prims = new Set<unknown>();
    const others: ValuePredicate[] = [];
    let matchesNull = false;
    let hasNumbers = false;
    const plainStrings = !this.collated;
    for (const x of arg) {
      // The usual operand (thousands of ids from jobd's batches): a string goes straight to the set.
      if (typeof x === 'string' && plainStrings) {
        prims.add(x);
        continue;
      }
      if (isOperatorObject(x)) throw new CommandError('BadValue', 'cannot nest $ under $in');
      if (x === null) matchesNull = true;
      else if (x instanceof RegExp || typeRank(x) === Rank.Regex) others.push(regexTest(x, undefined));
      else if ((typeof x === 'number' && !Number.isNaN(x)) || typeof x === 'boolean') {
        prims.add(x);
        if (typeof x === 'number') hasNumbers = true;
      } else others.push(this.scalarEq(x));
    }
    const scalar: ValuePredicate = (x) => {
      if (x === null || x === undefined) return matchesNull;
      if (typeof x !== 'object') {
        if (prims.has(x)) return true;
      } else if (hasNumbers && typeRank(x) === Rank.Number && prims.has(Number(numericValue(x)))) return true;
      for (const t of others) if (t(x)) return true;
      return false;
    };
    return (v) => scalar(v) || (Array.isArray(v) && v.some(scalar));
  }

  private range(op: string, operand: unknown): ValuePredicate {
    if (operand === null || operand === undefined) {
      if (op === '$gt' || op === '$lt') return () => false;
      return (v) => v === null || v === undefined || (Array.isArray(v) && v.some((x) => x === null));
    }
    const rank = typeRank(operand);
    const strCmp = this.strCmp;
    const ok =
      op === '$gt'
        ? (c: number) => c > 0
        : op === '$gte'
          ? (c: number) => c >= 0
          : op === '$lt'
            ? (c: number) => c < 0
            : (c: number) => c <= 0;
    let scalar: ValuePredicate;
    if (rank === Rank.MinKey || rank === Rank.MaxKey)
      scalar = (x) => x !== undefined && ok(compareValues(x, operand));
    else if (operand instanceof Date) {
      const t = operand.getTime();
      scalar = (x) => x instanceof Date && ok(x.getTime() - t);
    } else if (typeof operand === 'number' && !Number.isNaN(operand)) {
      scalar = (x) =>
        typeof x === 'number'
          ? !Number.isNaN(x) && ok(x - operand)
          : typeRank(x) === Rank.Number && ok(compareValues(x, operand));
    } else scalar = (x) => typeRank(x) === rank && ok(compareValues(x, operand, strCmp));
    if (rank === Rank.Array) return scalar;
    return (v) => scalar(v) || (Array.isArray(v) && v.some(scalar));
  }

  private allOf(arg: unknown): ValuePredicate {
    if (!Array.isArray(arg)) throw new CommandError('BadValue', '$all needs an array');
    if (arg.length === 0) return () => false;
    const tests = arg.map((x) => {
      if (isPlainObject(x) && '$elemMatch' in x) return this.elemMatch(x.$elemMatch);
      if (x instanceof RegExp || typeRank(x) === Rank.Regex) return expand(regexTest(x, undefined));
      return this.eq(x);
    });
    return (v) => tests.every((t) => t(v));
  }

  private elemMatch(arg: unknown): ValuePredicate {
    if (!isPlainObject(arg)) throw new CommandError('BadValue', '$elemMatch needs an Object');
    const keys = Object.keys(arg);
    const valueOps =
      keys.length > 0 &&
      keys.every((k) => k.startsWith('$') && k !== '$and' && k !== '$or' && k !== '$nor' && k !== '$expr');
    if (valueOps) {
      const tests = keys.map((op) => {
        if (op === '$ne' || op === '$nin' || op === '$not') {
          const t =
            op === '$not' ? this.notInner(arg.$not) : op === '$ne' ? this.eq(arg.$ne) : this.in(arg.$nin);
          return (v: unknown) => !t(v);
        }
        if (op === '$exists') {
          const want = truthy(arg.$exists);
          return (v: unknown) => (v !== undefined) === want;
        }
        if (op === '$options') return () => true;
        return this.valueOp(op, arg[op], arg);
      });
      return (v) => Array.isArray(v) && v.some((x) => tests.every((t) => t(x)));
    }
    const sub = this.filter(arg);
    return (v) => Array.isArray(v) && v.some((x) => isPlainObject(x) && sub(x));
  }
}

function all(preds: DocPredicate[]): DocPredicate {
  if (preds.length === 0) return () => true;
  if (preds.length === 1) return preds[0] as DocPredicate;
  if (preds.length === 2) {
    const [a, b] = preds as [DocPredicate, DocPredicate];
    return (d) => a(d) && b(d);
  }
  return (d) => {
    for (const p of preds) if (!p(d)) return false;
    return true;
  };
}

function isOperatorObject(v: unknown): v is Document {
  if (!isPlainObject(v)) return false;
  for (const k in v) return k.startsWith('$');
  return false;
}

function truthy(v: unknown): boolean {
  if (typeof v === 'number') return v !== 0;
  if (v === null || v === undefined || v === false) return false;
  if (typeRank(v) === Rank.Number) return Number(numericValue(v)) !== 0;
  return true;
}

/** A scalar test that also holds when any element of an array value satisfies it. */
function expand(scalar: ValuePredicate): ValuePredicate {
  return (v) => scalar(v) || (Array.isArray(v) && v.some(scalar));
}

/**
 * Calls `test` on every value a dotted path reaches, traversing arrays as MongoDB does;
 * true when any call is. A path that reaches nothing yields one `undefined`.
 */
function anyValue(parts: string[], test: ValuePredicate): DocPredicate {
  const n = parts.length;
  const numeric = parts.map((p) => /^\d+$/.test(p));
  const walk = (v: unknown, i: number): boolean => {
    if (i === n) return test(v);
    const part = parts[i] as string;
    if (Array.isArray(v)) {
      if (numeric[i]) {
        const idx = Number(part);
        if (walk(v[idx], i + 1)) return true;
      }
      let sawObject = false;
      for (const x of v) {
        if (isPlainObject(x)) {
          sawObject = true;
          if (walk(x[part], i + 1)) return true;
        }
      }
      return !sawObject && !numeric[i] ? test(undefined) : false;
    }
    if (v !== null && typeof v === 'object' && isPlainObject(v)) return walk(v[part], i + 1);
    return test(undefined);
  };
  return (d) => walk(d, 0);
}

/** True when the path reaches at least one value (for $exists). */
function reached(path: string): DocPredicate {
  const parts = path.split('.');
  if (parts.length === 1) return (d) => d[path] !== undefined;
  return anyValue(parts, (v) => v !== undefined);
}

function regexTest(arg: unknown, options: unknown): ValuePredicate {
  let re: RegExp;
  if (arg instanceof RegExp) re = options === undefined ? arg : toRegExp(arg.source, String(options));
  else if (typeRank(arg) === Rank.Regex) {
    const r = arg as { pattern: string; options: string };
    re = toRegExp(r.pattern, options === undefined ? r.options : String(options));
  } else if (typeof arg === 'string') re = toRegExp(arg, options === undefined ? '' : String(options));
  else throw new CommandError('BadValue', '$regex has to be a string');
  return (x) => {
    if (typeof x === 'string') {
      re.lastIndex = 0;
      return re.test(x);
    }
    if (typeRank(x) === Rank.String && x !== null && typeof x === 'object') return re.test(String(x));
    return false;
  };
}

function toRegExp(pattern: string, options: string): RegExp {
  let flags = '';
  let source = pattern;
  for (const o of options) {
    if (o === 'i' || o === 'm' || o === 's') flags += o;
    else if (o === 'x') source = stripExtended(source);
    else if (o !== 'u' && o !== 'g')
      throw new CommandError('BadValue', `invalid flag in regex options: ${o}`);
  }
  try {
    return new RegExp(source, flags + 'u');
  } catch {
    try {
      return new RegExp(source, flags);
    } catch (err) {
      throw new CommandError(
        'BadValue',
        `Regular expression is invalid: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }
}

/** The 'x' option: unescaped whitespace and #-comments are not part of the pattern. */
function stripExtended(pattern: string): string {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === '\\') {
      out += c + (pattern[i + 1] ?? '');
      i++;
    } else if (c === '#') {
      while (i < pattern.length && pattern[i] !== '\n') i++;
    } else if (!/\s/.test(c)) out += c;
  }
  return out;
}

function modTest(arg: unknown): ValuePredicate {
  if (!Array.isArray(arg) || arg.length !== 2)
    throw new CommandError('BadValue', 'malformed mod, needs to be an array of two numbers');
  const d = Math.trunc(Number(numericValue(arg[0])));
  const r = Math.trunc(Number(numericValue(arg[1])));
  if (!Number.isFinite(d) || !Number.isFinite(r))
    throw new CommandError('BadValue', 'malformed mod, divisor and remainder must be numbers');
  if (d === 0) throw new CommandError('BadValue', 'divisor cannot be 0');
  return (x) => {
    if (typeRank(x) !== Rank.Number) return false;
    const n = Math.trunc(Number(numericValue(x)));
    return Number.isFinite(n) && n % d === r;
  };
}

const TYPE_CODES: Record<number, string> = {
  1: 'double',
  2: 'string',
  3: 'object',
  4: 'array',
  5: 'binData',
  6: 'undefined',
  7: 'objectId',
  8: 'bool',
  9: 'date',
  10: 'null',
  11: 'regex',
  12: 'dbPointer',
  13: 'javascript',
  14: 'symbol',
  15: 'javascriptWithScope',
  16: 'int',
  17: 'timestamp',
  18: 'long',
  19: 'decimal',
  [-1]: 'minKey',
  127: 'maxKey',
};
const TYPE_NAMES = new Set([...Object.values(TYPE_CODES), 'number']);

/** The $type alias of a stored value. */
export function typeAlias(v: unknown): string | undefined {
  if (v === undefined) return undefined;
  if (v === null) return 'null';
  switch (typeof v) {
    case 'number':
      return isInt32Number(v) ? 'int' : 'double';
    case 'bigint':
      return 'long';
    case 'string':
      return 'string';
    case 'boolean':
      return 'bool';
    default:
  }
  if (Array.isArray(v)) return 'array';
  if (v instanceof Date) return 'date';
  if (v instanceof RegExp) return 'regex';
  if (v instanceof Uint8Array) return 'binData';
  switch ((v as { _bsontype?: string })._bsontype) {
    case undefined:
      return 'object';
    case 'ObjectId':
      return 'objectId';
    case 'Binary':
      return 'binData';
    case 'Long':
      return 'long';
    case 'Double':
      return 'double';
    case 'Int32':
      return 'int';
    case 'Decimal128':
      return 'decimal';
    case 'Timestamp':
      return 'timestamp';
    case 'BSONRegExp':
      return 'regex';
    case 'Code':
      return (v as { scope?: unknown }).scope ? 'javascriptWithScope' : 'javascript';
    case 'BSONSymbol':
      return 'symbol';
    case 'MinKey':
      return 'minKey';
    case 'MaxKey':
      return 'maxKey';
    default:
      return 'object';
  }
}

const NUMERIC = new Set(['int', 'long', 'double', 'decimal']);

function typeTest(arg: unknown): ValuePredicate {
  const list = Array.isArray(arg) ? arg : [arg];
  const wanted = new Set<string>();
  for (const t of list) {
    if (typeof t === 'string') {
      if (!TYPE_NAMES.has(t)) throw new CommandError('BadValue', `Unknown type name alias: ${t}`);
      wanted.add(t);
    } else if (typeRank(t) === Rank.Number) {
      const code = Number(numericValue(t));
      const name = TYPE_CODES[code];
      if (!name) throw new CommandError('BadValue', `Invalid numerical type code: ${code}`);
      wanted.add(name);
    } else throw new CommandError('TypeMismatch', 'type must be represented as a number or a string');
  }
  const scalar: ValuePredicate = (x) => {
    const a = typeAlias(x);
    if (a === undefined) return false;
    return wanted.has(a) || (wanted.has('number') && NUMERIC.has(a));
  };
  return (v) => scalar(v) || (Array.isArray(v) && v.some(scalar));
}
