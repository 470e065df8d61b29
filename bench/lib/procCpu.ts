/**
 * CPU time of process trees from /proc/<pid>/stat (Linux): utime+stime of a process, plus
 * cutime+cstime (the children it has already reaped), plus the trees of its live children.
 * Two snapshots around a timed phase give each tree's CPU in that phase: a child reaped in between
 * moves from "live" to its parent's cutime with all its CPU, so the difference stays exact.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

interface ProcStat {
  ppid: number;
  /** utime + stime, in clock ticks. */
  own: number;
  /** cutime + cstime: children reaped so far, in clock ticks. */
  reaped: number;
}

let ticksPerSecond: number | undefined;
function ticks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100; // the Linux default (USER_HZ)
    }
  }
  return ticksPerSecond;
}

function parseStat(text: string): ProcStat | null {
  // The command name (field 2) is in parentheses and may contain spaces: fields start after the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state), so field n is f[n - 3].
  const n = (field: number): number => Number(f[field - 3]);
  const ppid = n(4);
  if (!Number.isFinite(ppid)) return null;
  return { ppid, own: n(14) + n(15), reaped: n(16) + n(17) };
}

/** Every process on the machine, by pid. */
function readAll(): Map<number, ProcStat> {
  const all = new Map<number, ProcStat>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const s = parseStat(readFileSync(`/proc/${name}/stat`, 'utf8'));
      if (s) all.set(Number(name), s);
    } catch {
      // exited while we looked
    }
  }
  return all;
}

function childrenOf(all: Map<number, ProcStat>): Map<number, number[]> {
  const kids = new Map<number, number[]>();
  for (const [pid, s] of all) {
    const list = kids.get(s.ppid);
    if (list) list.push(pid);
    else kids.set(s.ppid, [pid]);
  }
  return kids;
}

function tree(all: Map<number, ProcStat>, kids: Map<number, number[]>, pid: number): number {
  const s = all.get(pid);
  if (!s) return 0;
  let total = s.own + s.reaped;
  for (const k of kids.get(pid) ?? []) total += tree(all, kids, k);
  return total;
}

/**
 * CPU seconds so far: of each `trees` root with all its descendants, and of `split` (itself, its
 * descendants, and of `self` its main thread alone: the JavaScript thread, without V8's background
 * threads (optimising compiler, GC helpers), libuv's pool and worker threads).
 */
export interface CpuSnapshot {
  trees: Record<string, number>;
  split: { self: number; selfMain: number; children: number } | null;
}

/** utime + stime of the process's main thread (its thread id is its pid), in clock ticks. */
function mainThreadTicks(pid: number): number {
  try {
    return parseStat(readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8'))?.own ?? 0;
  } catch {
    return 0;
  }
}

export function cpuSnapshot(trees: Record<string, number | undefined>, split?: number): CpuSnapshot {
  const all = readAll();
  const kids = childrenOf(all);
  const hz = ticks();
  const out: CpuSnapshot = { trees: {}, split: null };
  for (const [name, pid] of Object.entries(trees)) {
    if (pid !== undefined) out.trees[name] = tree(all, kids, pid) / hz;
  }
  if (split !== undefined) {
    const s = all.get(split);
    const whole = tree(all, kids, split);
    out.split = s
      ? { self: s.own / hz, selfMain: mainThreadTicks(split) / hz, children: (whole - s.own) / hz }
      : { self: 0, selfMain: 0, children: 0 };
  }
  return out;
}

/** after - before, per tree and for the split process. */
export function cpuDelta(before: CpuSnapshot, after: CpuSnapshot): CpuSnapshot {
  const trees: Record<string, number> = {};
  for (const [name, v] of Object.entries(after.trees)) trees[name] = v - (before.trees[name] ?? 0);
  const split =
    after.split && before.split
      ? {
          self: after.split.self - before.split.self,
          selfMain: after.split.selfMain - before.split.selfMain,
          children: after.split.children - before.split.children,
        }
      : null;
  return { trees, split };
}
