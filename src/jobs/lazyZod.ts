/**
 * zod, for the code that builds job type schemas, without importing it at load. A sandbox child that
 * runs a typed job whose schemas the daemon checks never needs zod, and compiling its modules is most
 * of what such a child spends beyond a bare `node` (about 130 ms of CPU per child on Node 20).
 *
 * Whoever imports zod anyway (the catalog: jobctl, the library, the daemon) hands it over with
 * provideZod, so every schema of the process comes from that one copy.
 */
import { createRequire } from 'node:module';
import type { z } from 'zod';

export type Zod = typeof z;

let zod: Zod | undefined;

export function provideZod(z: Zod): void {
  zod ??= z;
}

/**
 * zod now, for code that must build a schema synchronously (dataPath(), legacyNames() at a module's
 * top level, the old shape of defineJobType). When nobody provided one (a sandbox child running a job
 * type of the old shape), zod's CommonJS build is loaded: its schemas compose with the ES build's, as
 * zod recognises its own classes by trait and keeps one global registry.
 */
export function zodNow(): Zod {
  zod ??= (createRequire(import.meta.url)('zod') as { z: Zod }).z;
  return zod;
}

/** zod, imported when first needed (a child that checks a typed job's input itself). */
export async function loadZod(): Promise<Zod> {
  zod ??= (await import('zod')).z;
  return zod;
}

/** Whether this process holds zod through this module (tests: an isolated typed job's child does not). */
export function zodLoaded(): boolean {
  return zod !== undefined;
}

/**
 * A schema (or set of schema fields) built with zod on its first call, then the same instance on
 * every call: for the pieces job types share and for the inputs of the data cores, whose modules a
 * sandbox child loads without needing zod (the daemon checked the job's input).
 */
export function lazySchema<T>(build: (z: Zod) => T): () => T {
  let built: { value: T } | undefined;
  return () => (built ??= { value: build(zodNow()) }).value;
}
