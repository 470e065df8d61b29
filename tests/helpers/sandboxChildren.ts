/** Live sandbox children (childEntry processes) of a process, read from /proc. */
import { readFileSync, readdirSync } from 'node:fs';

export interface ProcChild {
  pid: number;
  /** Start time after boot, in clock ticks: a larger one started later. */
  start: number;
}

interface Proc {
  pid: number;
  ppid: number;
  start: number;
  cmdline: string;
}

/** Every live (not zombie) process: pid, parent, start time and command line. */
function processes(): Proc[] {
  const out: Proc[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // After "pid (comm) ": state, ppid, ... starttime is field 22 of the whole line.
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (f[0] === 'Z') continue;
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8');
      out.push({ pid: Number(name), ppid: Number(f[1]), start: Number(f[19]), cmdline });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** The pids of `ppid`'s spawn helpers (sandbox/spawnHelperEntry.cjs), which start its isolated children. */
export function spawnHelpers(ppid: number): number[] {
  return processes()
    .filter((p) => p.ppid === ppid && p.cmdline.includes('spawnHelperEntry'))
    .map((p) => p.pid);
}

/**
 * The live childEntry processes that `ppid` started, oldest first: its own children, and those its
 * spawn helper started for it.
 */
export function sandboxChildren(ppid: number): ProcChild[] {
  const all = processes();
  const parents = new Set([
    ppid,
    ...all.filter((p) => p.ppid === ppid && p.cmdline.includes('spawnHelperEntry')).map((p) => p.pid),
  ]);
  return all
    .filter((p) => parents.has(p.ppid) && p.cmdline.includes('childEntry'))
    .map((p) => ({ pid: p.pid, start: p.start }))
    .sort((a, b) => a.start - b.start || a.pid - b.pid);
}
