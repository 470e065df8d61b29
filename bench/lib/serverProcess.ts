/** Helpers for benches that run one build's embedded server as its own process and read its CPU. */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

/** A launcher of one build's embedded server (its dist/embedded/cli.js). */
export function serverLauncher(dist: string): string {
  const tag = createHash('sha256').update(dist).digest('hex').slice(0, 12);
  const file = join(tmpdir(), `jobd-server-cost-${tag}.mjs`);
  const cli = pathToFileURL(join(dist, 'embedded', 'cli.js')).href;
  writeFileSync(file, `import { main } from ${JSON.stringify(cli)};\nmain(process.argv);\n`);
  return file;
}

/** A process's user+system CPU seconds so far, from /proc (10 ms ticks). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // USER_HZ
}

export interface Build {
  name: 'base' | 'this';
  dist: string;
}

/**
 * The two builds of an A/B: SERVER_COST_BASE's dist and this checkout's. Exits (2) with a message when
 * SERVER_COST_BASE is not set.
 */
export function buildsFromEnv(root: string): Build[] {
  const base = process.env.SERVER_COST_BASE;
  if (!base) {
    process.stderr.write('SERVER_COST_BASE is not set: give the other build (a dist directory) to compare\n');
    process.exit(2);
  }
  return [
    { name: 'base', dist: resolve(base) },
    { name: 'this', dist: join(root, 'dist') },
  ];
}

/** `rounds` runs of each build, interleaved, the first build alternating; each build's runs in order. */
export async function interleaved<R>(
  builds: Build[],
  rounds: number,
  run: (b: Build, round: number) => Promise<R>,
): Promise<Record<Build['name'], R[]>> {
  const runs: Record<Build['name'], R[]> = { base: [], this: [] };
  for (let r = 0; r < rounds; r++) {
    for (const b of r % 2 === 0 ? builds : [...builds].reverse()) runs[b.name].push(await run(b, r));
  }
  return runs;
}

/** The median (the upper one of an even count). */
export const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
