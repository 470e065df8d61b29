/**
 * Which jobs a due schedule creates now. Pure: (schedule, when daemons were up, now) → fire times.
 *
 * A fire time is *on time* when some daemon was up at that moment (it falls inside a daemon's
 * [startedAt, last heartbeat] span, or after the start of a daemon alive now): such fires are all
 * created, however late the scheduler got to them (a busy machine delays, it never drops). A fire time
 * no daemon was up for was *missed*; each stretch of missed fires follows the schedule's catchUp
 * policy: `skip` creates none, `once` the latest one, `all` the latest catchUpMax of them.
 */
import type { CatchUpPolicy } from '../types.js';
import type { FireSeries } from './spec.js';

export interface UpSpan {
  from: number;
  to: number;
}

export interface PlannedFire {
  at: Date;
  /** Created for a fire time no daemon was up for. */
  catchUp: boolean;
}

export interface FirePlan {
  fires: PlannedFire[];
  /** Missed fire times that catchUp left out. */
  skipped: number;
  /** The next fire time not yet planned: the schedule's new nextFireAt. */
  nextFireAt: Date;
}

/** Merge spans into sorted, disjoint ones. */
function merge(spans: UpSpan[]): UpSpan[] {
  const sorted = spans.filter((s) => s.to >= s.from).sort((a, b) => a.from - b.from);
  const out: UpSpan[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last && s.from <= last.to) last.to = Math.max(last.to, s.to);
    else out.push({ ...s });
  }
  return out;
}

/** Count fire times in [from, to] (inclusive), up to `cap` (beyond it the count is a lower bound). */
function countIn(series: FireSeries, from: number, to: number, cap: number): number {
  let n = 0;
  for (let t = series.after(new Date(from - 1)); t.getTime() <= to && n < cap; t = series.after(t)) n++;
  return n;
}

export function planFires(o: {
  series: FireSeries;
  nextFireAt: Date;
  now: Date;
  up: UpSpan[];
  catchUp: CatchUpPolicy;
  catchUpMax: number;
  /** Most jobs one pass creates; the rest follow in the next pass. */
  limit: number;
}): FirePlan {
  const start = o.nextFireAt.getTime();
  const now = o.now.getTime();
  const fires: PlannedFire[] = [];
  let skipped = 0;
  if (start > now) return { fires, skipped, nextFireAt: o.nextFireAt };
  // Alternate missed stretches and up stretches over [start, now], oldest first.
  const segments: { from: number; to: number; up: boolean }[] = [];
  let cursor = start;
  for (const s of merge(o.up)) {
    if (s.to < cursor) continue;
    if (s.from > now) break;
    if (s.from > cursor) segments.push({ from: cursor, to: s.from - 1, up: false });
    const to = Math.min(s.to, now);
    segments.push({ from: Math.max(cursor, s.from), to, up: true });
    cursor = to + 1;
  }
  if (cursor <= now) segments.push({ from: cursor, to: now, up: false });

  for (const seg of segments) {
    if (seg.up) {
      for (let t = o.series.after(new Date(seg.from - 1)); t.getTime() <= seg.to; t = o.series.after(t)) {
        if (fires.length >= o.limit) return { fires, skipped, nextFireAt: t };
        fires.push({ at: t, catchUp: false });
      }
      continue;
    }
    // A missed stretch: its latest fires, newest first, then put in time order.
    const keep = o.catchUp === 'skip' ? 0 : o.catchUp === 'once' ? 1 : o.catchUpMax;
    const latest: Date[] = [];
    for (
      let t = o.series.before(new Date(seg.to + 1));
      t && t.getTime() >= seg.from && latest.length < keep;
    ) {
      latest.push(t);
      t = o.series.before(t);
    }
    if (fires.length + latest.length > o.limit && fires.length > 0) {
      // Leave this stretch whole for the next pass.
      return { fires, skipped, nextFireAt: o.series.after(new Date(seg.from - 1)) };
    }
    const oldestKept = latest.length ? latest[latest.length - 1]!.getTime() : seg.to + 1;
    skipped += countIn(o.series, seg.from, oldestKept - 1, 100_000);
    for (const t of latest.reverse()) fires.push({ at: t, catchUp: true });
  }
  return { fires, skipped, nextFireAt: o.series.after(new Date(now)) };
}
