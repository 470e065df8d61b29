/**
 * Process-group bookkeeping from /proc (Linux). A zombie is counted as gone: it runs nothing, and on
 * hosts whose init does not reap orphans it would otherwise never disappear.
 */
import { readdir, readFile } from 'node:fs/promises';

interface ProcStat {
  state: string;
  pgrp: number;
}

async function readStat(pid: number | string): Promise<ProcStat | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: the fields after it start at the last ')'.
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0] ?? '?', pgrp: Number(rest[2]) };
  } catch {
    return undefined;
  }
}

/** True while the process exists and is not a zombie. */
export async function isAlive(pid: number): Promise<boolean> {
  const st = await readStat(pid);
  return !!st && st.state !== 'Z' && st.state !== 'X';
}

/** Live (non-zombie) members of a process group. */
export async function groupMembers(pgid: number): Promise<number[]> {
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return [];
  }
  const out: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const st = await readStat(name);
    if (st && st.pgrp === pgid && st.state !== 'Z' && st.state !== 'X') out.push(Number(name));
  }
  return out;
}

/** Sends a signal to a whole group; a group already gone is fine. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/** Polls until the group has no live member, or the deadline passes; returns whether it is gone. */
export async function waitGroupGone(pgid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if ((await groupMembers(pgid)).length === 0) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((res) => setTimeout(res, 25));
  }
}

/**
 * Stops a group: SIGTERM, then SIGKILL after `graceMs`, then waits for it to be gone (bounded).
 * Returns false if something survived SIGKILL (a process stuck in the kernel).
 */
export async function stopGroup(pgid: number, graceMs: number): Promise<boolean> {
  if ((await groupMembers(pgid)).length === 0) return true;
  signalGroup(pgid, 'SIGTERM');
  if (await waitGroupGone(pgid, graceMs)) return true;
  signalGroup(pgid, 'SIGKILL');
  return waitGroupGone(pgid, 10_000);
}
