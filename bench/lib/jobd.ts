/**
 * The benchmark runs jobd's compiled code (dist/, what `npm run bench` just built), so pooled and
 * isolated children load plain .js handlers exactly as in production. Types come from src/.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type * as ConfigLoad from '../../src/config/load.js';
import type * as Embedded from '../../src/embedded/index.js';
import type * as Registry from '../../src/jobs/registry.js';
import type * as StoreApi from '../../src/store/index.js';
import type * as DaemonApi from '../../src/worker/daemon.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** BENCH_DIST: another build (inside the checkout, so it finds node_modules) to compare against. */
export const DIST = resolve(ROOT, process.env.BENCH_DIST ?? 'dist');

async function load<T>(rel: string): Promise<T> {
  const file = join(DIST, rel);
  if (!existsSync(file)) throw new Error(`${file} is missing: run \`npm run build\` (npm run bench does)`);
  return (await import(pathToFileURL(file).href)) as T;
}

export interface Jobd {
  startDaemon: typeof DaemonApi.startDaemon;
  startEmbeddedServer: typeof Embedded.startEmbeddedServer;
  loadConfig: typeof ConfigLoad.loadConfig;
  store: typeof StoreApi;
  builtinHandlerPath: typeof Registry.builtinHandlerPath;
}

export async function loadJobd(): Promise<Jobd> {
  const [daemon, embedded, config, store, registry] = await Promise.all([
    load<typeof DaemonApi>('worker/daemon.js'),
    load<typeof Embedded>('embedded/index.js'),
    load<typeof ConfigLoad>('config/load.js'),
    load<typeof StoreApi>('store/index.js'),
    load<typeof Registry>('jobs/registry.js'),
  ]);
  return {
    startDaemon: daemon.startDaemon,
    startEmbeddedServer: embedded.startEmbeddedServer,
    loadConfig: config.loadConfig,
    store,
    builtinHandlerPath: registry.builtinHandlerPath,
  };
}

/**
 * The embedded server of the build being measured: bin/jobd-embedded for dist/, and for another build
 * (BENCH_DIST) a launcher of that build's server, so an A/B run compares the servers too.
 */
function embeddedBin(): string {
  if (DIST === resolve(ROOT, 'dist')) return join(ROOT, 'bin/jobd-embedded');
  const tag = createHash('sha256').update(DIST).digest('hex').slice(0, 12);
  const launcher = join(tmpdir(), `jobd-bench-embedded-${tag}.mjs`);
  const cli = pathToFileURL(join(DIST, 'embedded', 'cli.js')).href;
  writeFileSync(launcher, `import { main } from ${JSON.stringify(cli)};\nmain(process.argv);\n`);
  return launcher;
}

/**
 * An embedded server in its own process (the measured build's, see embeddedBin, unless `bin` names
 * another, in memory unless `args` give a data dir, on a free port); resolves once it listens.
 * `nodeArgs` go to node before the script (e.g. --cpu-prof).
 */
export function startEmbeddedProcess(
  opts: { nodeArgs?: string[]; bin?: string; args?: string[] } = {},
): Promise<{ uri: string; pid: number; close(): Promise<void> }> {
  const bin = opts.bin ?? embeddedBin();
  return new Promise((resolveStart, rejectStart) => {
    const args = [...(opts.nodeArgs ?? []), bin, '--port', '0', ...(opts.args ?? [])];
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const rl = createInterface({ input: child.stdout! });
    rl.on('line', (line) => {
      const m = /listening on (mongodb:\/\/\S+)/.exec(line);
      if (!m) return;
      resolveStart({
        uri: m[1]!,
        pid: child.pid!,
        close: async () => {
          child.kill('SIGTERM');
          await exited;
        },
      });
    });
    child.once('exit', (code) => rejectStart(new Error(`${bin} exited (${code}) before listening`)));
  });
}
