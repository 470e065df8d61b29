/** The bare cost of a Node process: `node -e 0`, spawned sequentially or `concurrency` at a time. */
import { spawn } from 'node:child_process';
import { cpuDelta, cpuSnapshot } from './procCpu.js';

function spawnOnce(): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
    c.once('error', reject);
    c.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`node -e 0 exited ${code}`))));
  });
}

export interface SpawnFigures {
  perSec: number;
  /** CPU milliseconds per spawn: of this process (the spawning) and of the children themselves. */
  /** selfMain: the spawning process's main thread alone (see procCpu.ts). */
  cpuMs: { self: number; selfMain: number; children: number } | null;
}

/** Processes per second for `n` spawns, at most `concurrency` alive at once. */
export async function spawnRate(n: number, concurrency: number): Promise<SpawnFigures> {
  let next = 0;
  const cpu0 = cpuSnapshot({}, process.pid);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n) {
        next++;
        await spawnOnce();
      }
    }),
  );
  const perSec = n / ((performance.now() - t0) / 1000);
  const cpu = cpuDelta(cpu0, cpuSnapshot({}, process.pid)).split;
  return {
    perSec,
    cpuMs: cpu
      ? { self: (cpu.self * 1000) / n, selfMain: (cpu.selfMain * 1000) / n, children: (cpu.children * 1000) / n }
      : null,
  };
}
