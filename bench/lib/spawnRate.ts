/** The bare cost of a Node process: `node -e 0`, spawned sequentially or `concurrency` at a time. */
import { spawn } from 'node:child_process';

function spawnOnce(): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
    c.once('error', reject);
    c.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`node -e 0 exited ${code}`))));
  });
}

/** Processes per second for `n` spawns, at most `concurrency` alive at once. */
export async function spawnRate(n: number, concurrency: number): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n) {
        next++;
        await spawnOnce();
      }
    }),
  );
  return n / ((performance.now() - t0) / 1000);
}
