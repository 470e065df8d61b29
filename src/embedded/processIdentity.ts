/**
 * Whether the process that wrote a lock is still running, in a way that pid reuse cannot fool.
 *
 * A pid alone is not an identity: after a crash the kernel hands the number to a new process or thread,
 * and kill(pid, 0) succeeds for thread ids too. So a lock also records its owner's start time (field 22
 * of /proc/<pid>/stat, clock ticks since boot) and the boot id. The owner is gone when its pid no longer
 * exists, is a zombie, is a thread of another process (its Tgid differs), started at another time, or
 * when the machine has booted since. Without /proc (not Linux) only kill(pid, 0) can tell.
 */
import { readFileSync } from 'node:fs';

/** Recorded beside the pid; absent fields (no /proc, an older lock) are not compared. */
export interface ProcessMark {
  /** Start time of the process, in clock ticks since boot. */
  startTicks?: string;
  /** /proc/sys/kernel/random/boot_id of the boot it ran in. */
  bootId?: string;
}

export type Liveness = { alive: true } | { alive: false; why: string };

/** This process's mark. */
export function ownMark(): ProcessMark {
  const mark: ProcessMark = {};
  const stat = readStat(process.pid);
  if (stat) mark.startTicks = stat.startTicks;
  const boot = bootId();
  if (boot) mark.bootId = boot;
  return mark;
}

/** Whether the process `pid` that left `mark` is still running. When it cannot be told, it is. */
export function processLiveness(pid: number, mark: ProcessMark): Liveness {
  const boot = bootId();
  if (mark.bootId && boot && mark.bootId !== boot) {
    return { alive: false, why: `the machine has restarted since (boot id ${mark.bootId}, now ${boot})` };
  }
  const stat = readStat(pid);
  if (stat === undefined) return killProbe(pid);
  if (stat.state === 'Z' || stat.state === 'X' || stat.state === 'x') {
    return { alive: false, why: `process ${pid} has exited` };
  }
  const tgid = readTgid(pid);
  if (tgid !== undefined && tgid !== pid) {
    return { alive: false, why: `pid ${pid} is now a thread of process ${tgid}` };
  }
  if (mark.startTicks && stat.startTicks !== mark.startTicks) {
    return { alive: false, why: `pid ${pid} now belongs to a process started at another time` };
  }
  return { alive: true };
}

/** For file systems without /proc, and processes /proc hides (hidepid): ESRCH is the only proof of death. */
function killProbe(pid: number): Liveness {
  try {
    process.kill(pid, 0);
    return { alive: true };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EPERM') return { alive: true };
    return { alive: false, why: `process ${pid} no longer exists` };
  }
}

/** State (field 3) and start time (field 22) from /proc/<pid>/stat, or undefined when unreadable. */
export function readStat(pid: number): { state: string; startTicks: string } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Field 2 is the command name in parentheses and may itself hold spaces or parentheses.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = rest[0];
  const startTicks = rest[22 - 3];
  if (!state || !startTicks || !/^\d+$/.test(startTicks)) return undefined;
  return { state, startTicks };
}

function readTgid(pid: number): number | undefined {
  try {
    const m = /^Tgid:\s*(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

let cachedBootId: string | null | undefined;

function bootId(): string | undefined {
  if (cachedBootId === undefined) {
    try {
      cachedBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
    } catch {
      cachedBootId = null;
    }
  }
  return cachedBootId ?? undefined;
}
