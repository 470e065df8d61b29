/**
 * data_aggregation's core on files: group the records of an NDJSON file by one or more fields, in
 * bounded memory, exactly.
 *
 * Groups live in a Map keyed by the JSON text of their key values. Memory is counted in entries: one
 * per group plus one per distinct value a distinct_count holds. When the entries reach `spillLimit`,
 * the Map is written to disk as a sorted run (each group's state, then each distinct value as a line
 * of its own) and emptied. At the end the runs are merged, 64 at a time (more runs take extra passes),
 * and because they are sorted by (key, metric, value), one group's states are adjacent and combine
 * into its exact totals, and equal distinct values are adjacent and count once: a group with more
 * distinct values than memory holds is still counted exactly, one value at a time.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { CoreContext } from '../../lib/context.js';
import { tempSibling } from '../../lib/atomic.js';
import { throwIfAborted } from '../../lib/errors.js';
import { RecordWriter } from '../records.js';
import { asJobError, lineChunksWithProgress } from './fileRun.js';
import type { DistinctSet } from './distinctSet.js';
import { GroupRows, type Group } from './groupRows.js';
import { Metrics, type MetricSpec, type State } from './metrics.js';
import { compareCursors, RunCursor, RunWriter, type RunValue } from './runFiles.js';

export interface AggregateSpec {
  /** Resolved paths. */
  input: string;
  output: string;
  groupBy: string[];
  metrics: MetricSpec[];
  /** Entries (groups + distinct values) held in memory before a sorted run is spilled. */
  spillLimit: number;
  /** Runs merged at once (default 64). */
  fanIn?: number;
}

export interface AggregateResult {
  rows: number;
  groups: number;
  spilled_runs: number;
  merge_passes: number;
}

export async function aggregateRecords(spec: AggregateSpec, ctx: CoreContext): Promise<AggregateResult> {
  const metrics = new Metrics(spec.metrics);
  const fanIn = spec.fanIn ?? 64;
  const spillDir = tempSibling(spec.output);
  const runs: string[] = [];
  const rowsIn = new GroupRows(spec.groupBy, metrics);
  let rows = 0;
  let passes = 0;
  const out = new RecordWriter(spec.output);
  try {
    let line = 0;
    for await (const { buf } of lineChunksWithProgress(spec.input, ctx, 'data_aggregation', 0, 80)) {
      // A chunk's lines go through synchronously: one await per chunk, not per row.
      for (let from = 0; from < buf.length;) {
        const nl = buf.indexOf(10, from);
        const stop = nl === -1 ? buf.length : nl;
        line += 1;
        const added = rowsIn.addLine(spec.input, line, buf, from, stop);
        from = stop + 1;
        if (!added) continue;
        rows += 1;
        if (rowsIn.entries >= spec.spillLimit) {
          if (runs.length === 0) await mkdir(spillDir);
          runs.push(await spill(rowsIn.groups, metrics, join(spillDir, `run-${runs.length}`)));
          rowsIn.reset();
        }
      }
    }
    let groups = rowsIn.groups;
    let groupCount = 0;
    const emit = async (key: string, values: Record<string, unknown>): Promise<void> => {
      const rec: Record<string, unknown> = {};
      const k = JSON.parse(key) as unknown[];
      spec.groupBy.forEach((f, i) => (rec[f] = k[i]));
      Object.assign(rec, values);
      groupCount += 1;
      await out.write(rec);
    };
    if (runs.length === 0) {
      for (const key of [...groups.keys()].sort()) {
        const g = groups.get(key)!;
        await emit(key, metrics.finish(g.st));
      }
    } else {
      if (groups.size > 0) runs.push(await spill(groups, metrics, join(spillDir, `run-${runs.length}`)));
      groups = new Map();
      const spilled = runs.length;
      let level = runs;
      while (level.length > fanIn) {
        throwIfAborted(ctx.signal, 'data_aggregation');
        const next: string[] = [];
        for (let i = 0; i < level.length; i += fanIn) {
          const part = level.slice(i, i + fanIn);
          if (part.length === 1) {
            next.push(part[0]!);
            continue;
          }
          const path = join(spillDir, `merge-${passes}-${i}`);
          const w = new RunWriter(path);
          await merge(part, metrics, ctx, { run: w });
          await w.close();
          for (const p of part) await rm(p, { force: true });
          next.push(path);
        }
        passes += 1;
        level = next;
      }
      ctx.progress(85, `merging ${level.length} sorted runs`);
      await merge(level, metrics, ctx, { emit });
      passes += 1;
      await out.commit();
      return { rows, groups: groupCount, spilled_runs: spilled, merge_passes: passes };
    }
    await out.commit();
    return { rows, groups: groupCount, spilled_runs: 0, merge_passes: 0 };
  } catch (err) {
    await out.abort();
    throw asJobError(err, ctx, 'data_aggregation');
  } finally {
    await rm(spillDir, { recursive: true, force: true });
  }
}

/** Writes the groups as a sorted run; returns its path. */
async function spill(groups: Map<string, Group>, metrics: Metrics, path: string): Promise<string> {
  const w = new RunWriter(path);
  try {
    for (const key of [...groups.keys()].sort()) {
      const g = groups.get(key)!;
      await w.state(key, g.n, metrics.serialize(g.st));
      for (const i of metrics.distinct) {
        for (const v of (g.st[i] as DistinctSet).sorted()) await w.value(key, 1 + i, v);
      }
    }
    await w.close();
  } catch (err) {
    w.destroy();
    throw err;
  }
  return path;
}

type Sink = { run: RunWriter } | { emit: (key: string, values: Record<string, unknown>) => Promise<void> };

/**
 * K-way merge of sorted runs. Into a run (a pass of a many-run merge): each group's states combined
 * into one line, its distinct values deduplicated. Into `emit`: each group's final metrics.
 */
async function merge(paths: string[], metrics: Metrics, ctx: CoreContext, sink: Sink): Promise<void> {
  const cursors = paths.map((p) => new RunCursor(p));
  const heap = new CursorHeap();
  try {
    for (const c of cursors) if (await c.fill()) heap.push(c);
    let key: string | null = null;
    let n = 0;
    let st: State[] = [];
    let counts: number[] = [];
    let written = false;
    let lastTag = -1;
    let lastValue: RunValue | undefined = undefined;
    let seen = 0;
    const flushState = async (): Promise<void> => {
      if ('run' in sink) {
        if (!written) await sink.run.state(key!, n, metrics.serialize(st));
      } else {
        await sink.emit(key!, metrics.finish(st, counts));
      }
      written = true;
    };
    while (heap.size > 0) {
      const c = heap.peek();
      if (c.key !== key) {
        if (key !== null) await flushState();
        key = c.key;
        n = 0;
        st = metrics.fresh(false);
        counts = metrics.specs.map(() => 0);
        written = false;
        lastTag = -1;
        lastValue = undefined;
      }
      if (c.tag === 0) {
        n += c.state[0] as number;
        metrics.combine(st, c.state.slice(1));
      } else if (c.tag !== lastTag || c.value !== lastValue) {
        lastTag = c.tag;
        lastValue = c.value;
        counts[c.tag - 1]! += 1;
        if ('run' in sink) {
          // The group's state line goes before its distinct values, as in any run.
          if (!written) await flushState();
          await sink.run.value(key, c.tag, c.value);
        }
      }
      if (c.advance() || (await c.fill())) heap.siftDown();
      else heap.pop();
      if (++seen % 65536 === 0) throwIfAborted(ctx.signal, 'data_aggregation');
    }
    if (key !== null) await flushState();
  } finally {
    for (const c of cursors) await c.close();
  }
}

/** A binary min-heap of run cursors ordered by their current line. */
class CursorHeap {
  private readonly a: RunCursor[] = [];

  get size(): number {
    return this.a.length;
  }

  peek(): RunCursor {
    return this.a[0]!;
  }

  push(c: RunCursor): void {
    const a = this.a;
    a.push(c);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.less(i, p)) {
        [a[i], a[p]] = [a[p]!, a[i]!];
        i = p;
      } else break;
    }
  }

  pop(): void {
    const last = this.a.pop()!;
    if (this.a.length > 0) {
      this.a[0] = last;
      this.siftDown();
    }
  }

  /** Restores the order after the top cursor moved on. */
  siftDown(): void {
    const a = this.a;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < a.length && this.less(l, m)) m = l;
      if (r < a.length && this.less(r, m)) m = r;
      if (m === i) return;
      [a[i], a[m]] = [a[m]!, a[i]!];
      i = m;
    }
  }

  private less(i: number, j: number): boolean {
    return compareCursors(this.a[i]!, this.a[j]!) < 0;
  }
}
