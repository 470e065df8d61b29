/**
 * Computed fields in MongoDB's aggregation expression language, evaluated by mingo: the expression a
 * user writes for `$addFields` in MongoDB computes the same field on a file. No code runs: the
 * operators are a fixed table, and `$function` (server-side JavaScript) is refused.
 */
import { Context, evalExpr } from 'mingo/core';
import * as accumulatorOperators from 'mingo/operators/accumulator';
import * as expressionOperators from 'mingo/operators/expression';

type Options = Parameters<typeof evalExpr>[2];

/** Operators that would run code, refused everywhere. */
const REFUSED = new Set(['$function', '$accumulator', '$where']);

// $sum, $avg, $min, $max ... are expressions too (over an array argument); mingo finds them among its
// accumulators.
const OPERATORS = new Set(
  [...Object.keys(expressionOperators), ...Object.keys(accumulatorOperators)].filter((k) => !REFUSED.has(k)),
);

/** The operator table without the refused operators (same type: only keys are removed). */
function allowed<T extends object>(ops: T): T {
  return Object.fromEntries(Object.entries(ops).filter(([k]) => !REFUSED.has(k))) as T;
}

const CONTEXT = Context.init({
  expression: allowed(expressionOperators),
  accumulator: allowed(accumulatorOperators),
});

const OPTIONS = {
  idKey: '_id',
  context: CONTEXT,
  scriptEnabled: false,
  useStrictMode: true,
  failOnError: true,
  processingMode: 0,
} as unknown as Options;

/**
 * What is wrong with an expression's shape, or null. Checks what can be checked without data: JSON
 * values only, operator names known, one operator per operator object. (An operator's argument types
 * are checked by the operator, row by row.)
 */
export function expressionProblem(expr: unknown, at = ''): string | null {
  if (expr === null || typeof expr === 'string' || typeof expr === 'boolean') return null;
  const where = at ? `at ${at}: ` : '';
  if (typeof expr === 'number') return Number.isFinite(expr) ? null : `${where}not a finite number`;
  if (Array.isArray(expr)) {
    for (let i = 0; i < expr.length; i++) {
      const p = expressionProblem(expr[i], `${at}[${i}]`);
      if (p) return p;
    }
    return null;
  }
  if (typeof expr !== 'object') return `${where}not a JSON value`;
  const keys = Object.keys(expr);
  const ops = keys.filter((k) => k.startsWith('$'));
  if (ops.length > 0) {
    if (keys.length > 1) {
      return `${where}an operator object holds exactly one $operator (got ${keys.join(', ')})`;
    }
    const op = ops[0]!;
    if (REFUSED.has(op)) return `${where}${op} runs code and is not allowed`;
    if (!OPERATORS.has(op)) {
      return `${where}unknown operator ${op} (MongoDB aggregation expression operators are allowed, e.g. $add, $multiply, $concat, $cond, $toInt, $dateToString)`;
    }
    // A literal's argument is data, not an expression.
    if (op === '$literal') return null;
    return expressionProblem((expr as Record<string, unknown>)[op], `${at}.${op}`);
  }
  for (const k of keys) {
    const p = expressionProblem((expr as Record<string, unknown>)[k], `${at}.${k}`);
    if (p) return p;
  }
  return null;
}

/** Evaluates `expr` against `record` as MongoDB's `$addFields` would; throws the operator's error. */
export function evaluate(record: Record<string, unknown>, expr: unknown): unknown {
  const v = evalExpr(record, expr, OPTIONS) as unknown;
  // Dates come out as ISO strings (a record file holds JSON).
  return v instanceof Date ? v.toISOString() : v;
}
