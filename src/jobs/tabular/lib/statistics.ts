/**
 * statistical_analysis's core. One streaming pass over an NDJSON file counts, sums (Neumaier), and
 * keeps mean and variance by Welford's method on values shifted by the field's first value (so a large
 * common offset costs no precision). Median, quantiles and histograms need the values themselves: they
 * are kept in memory up to a bound shared by all fields, then spilled to float64 files and answered by
 * exact selection (exactSelect.ts). Every figure is exact or correctly rounded: there is no
 * approximate mode.
 */
import { mkdtemp, open, rm, stat, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CoreContext } from '../../lib/context.js';
import { DataInputError } from '../../lib/errors.js';
import { readRecords } from '../records.js';
import {
  fileSource,
  histogram,
  lerp,
  memorySource,
  quantileRanks,
  selectRanks,
  type Histogram,
  type ValueSource,
} from './exactSelect.js';

export interface StatisticsOptions {
  source: string;
  /** The fields to describe; absent: every field holding at least one number. */
  fields?: readonly string[];
  quantiles: readonly number[];
  bins: number;
  /** Values (all fields together) kept in memory before spilling to disk. */
  memoryValues: number;
  /** Where spill files go (a fresh directory is made and removed inside it). */
  spillDir?: string;
  /** Most fields found when `fields` is absent. */
  maxFields: number;
}

export interface FieldStatistics {
  /** Numeric values. */
  count: number;
  /** Records where the field is absent or null. */
  missing: number;
  /** Records where the field holds something else (a string, a boolean, an object): not counted. */
  non_numeric: number;
  sum: number | null;
  mean: number | null;
  /** Variance and standard deviation with n - 1 (sample) and n (population) in the denominator. */
  variance_sample: number | null;
  variance_population: number | null;
  std_sample: number | null;
  std_population: number | null;
  min: number | null;
  max: number | null;
  median: number | null;
  /** numpy's default ('linear') method. */
  quantiles: Array<{ q: number; value: number | null }>;
  histogram: Histogram | null;
}

export interface StatisticsResult {
  records: number;
  fields: Record<string, FieldStatistics>;
  /** Fields whose values did not fit in memory and were spilled to disk. */
  spilled: string[];
}

const CHUNK = 8192;

/** A field's running figures and its values (in memory chunks, or spilled). */
class FieldState {
  count = 0;
  nonNumeric = 0;
  shift = 0;
  mean = 0; // of value - shift
  m2 = 0;
  sum = 0;
  comp = 0; // Neumaier's compensation
  min = Infinity;
  max = -Infinity;
  chunks: Float64Array[] = [];
  current = new Float64Array(CHUNK);
  fill = 0;
  spill: { path: string; fh: FileHandle } | null = null;

  add(v: number): void {
    if (this.count === 0) this.shift = v;
    this.count += 1;
    const x = v - this.shift;
    const delta = x - this.mean;
    this.mean += delta / this.count;
    this.m2 += delta * (x - this.mean);
    const t = this.sum + v;
    this.comp += Math.abs(this.sum) >= Math.abs(v) ? this.sum - t + v : v - t + this.sum;
    this.sum = t;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
    this.current[this.fill++] = v;
  }
}

export async function computeStatistics(
  opts: StatisticsOptions,
  ctx: CoreContext,
): Promise<StatisticsResult> {
  const size = (await stat(opts.source)).size;
  const listed = opts.fields ? new Set(opts.fields) : null;
  const states = new Map<string, FieldState>();
  if (listed) for (const f of listed) states.set(f, new FieldState());
  let inMemory = 0;
  let records = 0;
  let spillRoot: string | null = null;
  const spilled: string[] = [];

  /** Moves every in-memory chunk to its field's spill file; later chunks go there directly. */
  const spillAll = async (): Promise<void> => {
    spillRoot ??= await mkdtemp(join(opts.spillDir ?? tmpdir(), '.jobd-stats-spill-'));
    for (const [name, s] of states) {
      if (s.chunks.length === 0) continue;
      if (!s.spill) {
        const path = join(spillRoot, `${spilled.length}.f64`);
        s.spill = { path, fh: await open(path, 'w') };
        spilled.push(name);
      }
      for (const c of s.chunks) await s.spill.fh.write(new Uint8Array(c.buffer, c.byteOffset, c.byteLength));
      inMemory -= s.chunks.reduce((n, c) => n + c.length, 0);
      s.chunks = [];
    }
  };

  try {
    let lastPercent = -1;
    for await (const { record } of readRecords(opts.source, {
      signal: ctx.signal,
      onBytes: (read) => {
        const p = size > 0 ? Math.floor((read / size) * 90) : 90;
        if (p !== lastPercent) ctx.progress(p, `read ${read} of ${size} bytes`);
        lastPercent = p;
      },
    })) {
      records += 1;
      const names = listed ?? Object.keys(record);
      for (const name of names) {
        const v = record[name];
        if (v === undefined || v === null) continue;
        let s = states.get(name);
        if (!s) {
          if (states.size >= opts.maxFields) {
            throw new DataInputError(
              `statistical_analysis: ${opts.source} has more than ${opts.maxFields} fields; list the ones to describe in params.fields`,
            );
          }
          s = new FieldState();
          states.set(name, s);
        }
        if (typeof v !== 'number') {
          s.nonNumeric += 1;
          continue;
        }
        s.add(v);
        if (s.fill === CHUNK) {
          s.chunks.push(s.current);
          s.current = new Float64Array(CHUNK);
          s.fill = 0;
          inMemory += CHUNK;
          if (inMemory > opts.memoryValues) await spillAll();
        }
      }
    }
    // The chunks still in memory and the partial ones join the rest: in memory, or the spill file
    // when the field spilled.
    for (const s of states.values()) {
      s.chunks.push(s.current.slice(0, s.fill));
      s.current = new Float64Array(0);
      if (!s.spill) continue;
      for (const c of s.chunks) await s.spill.fh.write(new Uint8Array(c.buffer, c.byteOffset, c.byteLength));
      s.chunks = [];
    }
    for (const s of states.values()) await s.spill?.fh.close();

    const fields: Record<string, FieldStatistics> = {};
    const names = [...states.keys()].filter((n) => listed?.has(n) || states.get(n)!.count > 0);
    let done = 0;
    for (const name of names) {
      ctx.signal.throwIfAborted();
      fields[name] = await describe(states.get(name)!, records, opts, ctx.signal);
      done += 1;
      ctx.progress(
        90 + Math.floor((done / names.length) * 10),
        `described ${done} of ${names.length} fields`,
      );
    }
    return { records, fields, spilled };
  } finally {
    for (const s of states.values()) await s.spill?.fh.close().catch(() => undefined);
    if (spillRoot) await rm(spillRoot, { recursive: true, force: true });
  }
}

async function describe(
  s: FieldState,
  records: number,
  opts: StatisticsOptions,
  signal: AbortSignal,
): Promise<FieldStatistics> {
  const base = { count: s.count, missing: records - s.count - s.nonNumeric, non_numeric: s.nonNumeric };
  if (s.count === 0) {
    return {
      ...base,
      ...{ sum: null, mean: null, variance_sample: null, variance_population: null },
      ...{ std_sample: null, std_population: null, min: null, max: null, median: null },
      quantiles: opts.quantiles.map((q) => ({ q, value: null })),
      histogram: null,
    };
  }
  const wanted = [0.5, ...opts.quantiles].map((q) => quantileRanks(q, s.count));
  const ranks = wanted.flatMap((w) => [w.lo, w.hi]);
  let src: ValueSource;
  let at: Map<number, number>;
  if (s.spill) {
    src = fileSource(s.spill.path, s.count, signal);
    at = await selectRanks(src, ranks, s.min, s.max, Math.max(opts.memoryValues, CHUNK));
  } else {
    const all = new Float64Array(s.count);
    let offset = 0;
    for (const c of s.chunks) {
      all.set(c, offset);
      offset += c.length;
    }
    s.chunks = [];
    all.sort();
    src = memorySource(all);
    at = new Map(ranks.map((r) => [r, all[r]!]));
  }
  const value = (w: { lo: number; hi: number; frac: number }) => lerp(at.get(w.lo)!, at.get(w.hi)!, w.frac);
  const varPop = s.m2 / s.count;
  const varSample = s.count > 1 ? s.m2 / (s.count - 1) : null;
  return {
    ...base,
    sum: s.sum + s.comp,
    mean: s.shift + s.mean,
    variance_sample: varSample,
    variance_population: varPop,
    std_sample: varSample === null ? null : Math.sqrt(varSample),
    std_population: Math.sqrt(varPop),
    min: s.min,
    max: s.max,
    median: value(wanted[0]!),
    quantiles: opts.quantiles.map((q, i) => ({ q, value: value(wanted[i + 1]!) })),
    histogram: await histogram(src, opts.bins, s.min, s.max),
  };
}
