/** Live sandbox children (childEntry processes) of a process, read from /proc. */
import { readFileSync, readdirSync } from 'node:fs';

export interface ProcChild {
  pid: number;
  /** Start time after boot, in clock ticks: a larger one started later. */
  start: number;
}

/** The live (not zombie) childEntry processes whose parent is `ppid`, oldest first. */
export function sandboxChildren(ppid: number): ProcChild[] {
  const out: ProcChild[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // After "pid (comm) ": state, ppid, ... starttime is field 22 of the whole line.
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (f[0] === 'Z' || Number(f[1]) !== ppid) continue;
      if (!readFileSync(`/proc/${name}/cmdline`, 'utf8').includes('childEntry')) continue;
      out.push({ pid: Number(name), start: Number(f[19]) });
    } catch {
      // gone meanwhile
    }
  }
  return out.sort((a, b) => a.start - b.start || a.pid - b.pid);
}
