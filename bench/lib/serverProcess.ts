/** Helpers for benches that run one build's embedded server as its own process and read its CPU. */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
