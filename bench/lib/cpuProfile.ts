/**
 * Self time by function from V8 .cpuprofile files (what `node --cpu-prof` and the inspector's
 * Profiler write). A sample's time is the gap to the next sample (the last one runs to endTime), as
 * Chrome's profiler panel counts it; frames are keyed by function name, script and line, so the
 * same function seen in many processes (the pooled children) adds up.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROOT } from './jobd.js';
import { round } from './stats.js';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface CpuProfile {
  nodes: { id: number; callFrame: CallFrame }[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface Frame {
  function: string;
  /** Script, relative to the repository when inside it; empty for V8's own entries ((idle), (garbage collector)). */
  where: string;
  selfMs: number;
  /** Share of the busy time (all samples but (idle)). */
  pct: number;
}

export interface ProfileGroup {
  name: string;
  files: number;
  /** Sum of the profiles' durations. */
  wallMs: number;
  /** Sampled time that was not (idle). */
  busyMs: number;
  idleMs: number;
  gcMs: number;
  top: Frame[];
}

function shortUrl(url: string): string {
  if (!url.startsWith('file://')) return url;
  const path = fileURLToPath(url);
  const rel = relative(ROOT, path);
  return rel.startsWith('..') ? path : rel;
}

/** Adds each frame's self time (microseconds) of one profile into `into`. */
function accumulate(profile: CpuProfile, into: Map<string, { fn: string; where: string; us: number }>): void {
  const byId = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  let t = profile.startTime;
  const times = samples.map((_, i) => (t += deltas[i] ?? 0));
  for (let i = 0; i < samples.length; i++) {
    const us = Math.max(0, (i + 1 < samples.length ? times[i + 1]! : profile.endTime) - times[i]!);
    const cf = byId.get(samples[i]!);
    if (!cf) continue;
    const fn = cf.functionName || '(anonymous)';
    const where = cf.url ? `${shortUrl(cf.url)}:${cf.lineNumber + 1}` : '';
    const key = `${fn}\u0000${where}`;
    const e = into.get(key);
    if (e) e.us += us;
    else into.set(key, { fn, where, us });
  }
}

export function summarise(name: string, files: string[], top = 25): ProfileGroup {
  const frames = new Map<string, { fn: string; where: string; us: number }>();
  let wallUs = 0;
  for (const file of files) {
    const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
    wallUs += profile.endTime - profile.startTime;
    accumulate(profile, frames);
  }
  const all = [...frames.values()];
  const sum = (pred: (f: { fn: string }) => boolean): number =>
    all.filter(pred).reduce((a, f) => a + f.us, 0) / 1000;
  const idleMs = sum((f) => f.fn === '(idle)');
  const busyMs = sum((f) => f.fn !== '(idle)');
  return {
    name,
    files: files.length,
    wallMs: round(wallUs / 1000, 1),
    busyMs: round(busyMs, 1),
    idleMs: round(idleMs, 1),
    gcMs: round(
      sum((f) => f.fn === '(garbage collector)'),
      1,
    ),
    top: all
      .filter((f) => f.fn !== '(idle)')
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((f) => ({
        function: f.fn,
        where: f.where,
        selfMs: round(f.us / 1000, 1),
        pct: round((f.us / 1000 / (busyMs || 1)) * 100, 1),
      })),
  };
}

function profilesIn(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .sort()
    .map((f) => join(dir, f));
}

/**
 * Groups to summarise from command-line paths: a file is its own group; a folder holding profiles
 * is one group (all its profiles merged); a folder holding only folders gives one group per folder.
 */
export function groupsFrom(paths: string[]): { name: string; files: string[] }[] {
  const groups: { name: string; files: string[] }[] = [];
  for (const p of paths) {
    if (!existsSync(p)) throw new Error(`${p} does not exist`);
    if (!statSync(p).isDirectory()) {
      groups.push({ name: basename(p), files: [p] });
      continue;
    }
    const here = profilesIn(p);
    if (here.length) {
      groups.push({ name: basename(p), files: here });
      continue;
    }
    for (const sub of readdirSync(p).sort()) {
      const d = join(p, sub);
      if (statSync(d).isDirectory() && profilesIn(d).length) groups.push({ name: sub, files: profilesIn(d) });
    }
  }
  return groups;
}

export function formatGroup(g: ProfileGroup): string {
  const lines = [
    `== ${g.name}: ${g.files} profile${g.files === 1 ? '' : 's'}, ${g.wallMs} ms profiled, ` +
      `${g.busyMs} ms busy (${g.gcMs} ms GC), ${g.idleMs} ms idle`,
    `${'self ms'.padStart(10)} ${'% busy'.padStart(7)}  function  (script:line)`,
  ];
  for (const f of g.top) {
    lines.push(
      `${f.selfMs.toFixed(1).padStart(10)} ${f.pct.toFixed(1).padStart(7)}  ${f.function}${f.where ? `  (${f.where})` : ''}`,
    );
  }
  return lines.join('\n');
}
