/**
 * $percentile and $median (accumulators and expressions), as MongoDB 7.0 documents them: non-numeric
 * inputs are ignored; each `p` gives a value of the input set; no numeric input gives null. mingo's own
 * versions sort the numbers as strings (so 1000 sorts before 200): a silently wrong answer.
 *
 * MongoDB 7.0's only method, 'approximate', is a t-digest whose answers are values of the input; this
 * server computes the discrete percentile exactly (the ceil(p·n)-th smallest value), which the
 * approximation converges to and which MongoDB returns for inputs of the sizes a t-digest keeps whole.
 */
import { Context, evalExpr } from 'mingo/core';
import * as accumulatorOperators from 'mingo/operators/accumulator';
import * as expressionOperators from 'mingo/operators/expression';
import * as pipelineOperators from 'mingo/operators/pipeline';
import * as projectionOperators from 'mingo/operators/projection';
import * as queryOperators from 'mingo/operators/query';
import * as windowOperators from 'mingo/operators/window';
import { CommandError } from './errors.js';

type Options = Parameters<typeof evalExpr>[2];

function numbers(values: unknown[]): number[] {
  return values.filter((v): v is number => typeof v === 'number' && !Number.isNaN(v)).sort((a, b) => a - b);
}

function checkSpec(expr: unknown, name: string): { input: unknown; p?: unknown; method?: unknown } {
  if (expr === null || typeof expr !== 'object' || Array.isArray(expr) || !('input' in expr)) {
    throw new CommandError(
      'BadValue',
      `${name} requires an object with 'input'${name === '$percentile' ? " and 'p'" : ''}`,
    );
  }
  const spec = expr as { input: unknown; p?: unknown; method?: unknown };
  if (spec.method !== 'approximate') {
    throw new CommandError(
      'BadValue',
      `${name}: method must be 'approximate' (the only method of MongoDB 7.0); got ${JSON.stringify(spec.method)}`,
    );
  }
  return spec;
}

function ps(p: unknown): number[] {
  if (!Array.isArray(p) || p.length === 0 || !p.every((x) => typeof x === 'number' && x >= 0 && x <= 1)) {
    throw new CommandError(
      'BadValue',
      "$percentile 'p' must be a non-empty array of numbers between 0.0 and 1.0",
    );
  }
  return p as number[];
}

/** The discrete p-th percentile of ascending numbers (null for none). */
export function percentileAt(sorted: ArrayLike<number>, p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!;
}

function inputs(collection: unknown[], input: unknown, options: Options): unknown[] {
  return collection.map((doc) => evalExpr(doc, input, options) as unknown);
}

/**
 * mingo's operators with these in place of its own. (mingo merges contexts with the first definition
 * winning, so the replacements are built into one full context rather than layered on top.)
 */
export const AGGREGATION_CONTEXT = Context.init({
  pipeline: pipelineOperators,
  projection: projectionOperators,
  query: queryOperators,
  window: windowOperators,
  accumulator: {
    ...accumulatorOperators,
    $percentile: (collection: unknown[], expr: unknown, options: Options) => {
      const spec = checkSpec(expr, '$percentile');
      const sorted = numbers(inputs(collection, spec.input, options));
      return ps(spec.p).map((p) => percentileAt(sorted, p));
    },
    $median: (collection: unknown[], expr: unknown, options: Options) => {
      const spec = checkSpec(expr, '$median');
      return percentileAt(numbers(inputs(collection, spec.input, options)), 0.5);
    },
  },
  expression: {
    ...expressionOperators,
    $percentile: (obj: unknown, expr: unknown, options: Options) => {
      const spec = checkSpec(expr, '$percentile');
      const v = evalExpr(obj, spec.input, options) as unknown;
      const sorted = numbers(Array.isArray(v) ? v : [v]);
      return ps(spec.p).map((p) => percentileAt(sorted, p));
    },
    $median: (obj: unknown, expr: unknown, options: Options) => {
      const spec = checkSpec(expr, '$median');
      const v = evalExpr(obj, spec.input, options) as unknown;
      return percentileAt(numbers(Array.isArray(v) ? v : [v]), 0.5);
    },
  },
} as never);
