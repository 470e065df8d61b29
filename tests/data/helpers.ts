/**
 * Shared helpers of the dataset tests: temporary data dirs, a recording core context, process checks,
 * and a core run in a child process (to SIGKILL it mid-way).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { CoreContext } from '../../src/jobs/lib/context.js';
import { isAlive } from '../../src/jobs/lib/processGroup.js';
import { waitUntil } from '../helpers/waitFor.js';

export { isAlive, waitUntil };

/** The error a promise rejects with (fails the test if it resolves). */
export async function failure(p: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  return p.then(
    (v) => {
      throw new Error(`expected a failure, got ${JSON.stringify(v)}`);
    },
    (e: unknown) => e as Error & Record<string, unknown>,
  );
}

export interface RecordingContext extends CoreContext {
  progressed: Array<{ percent: number; message?: string }>;
  logs: Array<{ msg: string; extra?: Record<string, unknown> }>;
  controller: AbortController;
}

export function recordingContext(): RecordingContext {
  const controller = new AbortController();
  const progressed: RecordingContext['progressed'] = [];
  const logs: RecordingContext['logs'] = [];
  return {
    controller,
    signal: controller.signal,
    progressed,
    logs,
    progress: (percent, message) => progressed.push({ percent, ...(message ? { message } : {}) }),
    log: (msg, extra) => logs.push({ msg, ...(extra ? { extra } : {}) }),
  };
}

/** A fresh temporary folder; removed by the returned cleanup. */
export async function tempDir(label: string): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `jobd-data-${label}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** Every pid in the list is gone (or a zombie). */
export async function allGone(pids: number[], what = 'the processes'): Promise<void> {
  await waitUntil(
    async () => {
      for (const p of pids) if (await isAlive(p)) return undefined;
      return true;
    },
    { what: `${what} (${pids.join(', ')}) to be gone`, timeoutMs: 20_000 },
  );
}

/** Live processes whose command line contains `needle` (to find a tool a core started). */
export async function pidsWithArg(needle: string): Promise<number[]> {
  const { readdir, readFile } = await import('node:fs/promises');
  const out: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = (await readFile(`/proc/${name}/cmdline`, 'utf8')).split('\0');
      if (cmd.some((a) => a.includes(needle)) && (await isAlive(Number(name)))) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

const childScript = fileURLToPath(new URL('../fixtures/data/coreChild.ts', import.meta.url));

export interface CoreChild {
  proc: ChildProcess;
  events: Array<Record<string, unknown>>;
  /** Resolves with the first event matching. */
  waitEvent(pred: (e: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: string | null }>;
  output(): string;
}

/** Runs `core` (a module under src/jobs/data/lib, its export `name`) in a child: node --import tsx. */
export function runCoreChild(module: string, name: string, input: unknown, env: unknown): CoreChild {
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', childScript, module, name, JSON.stringify(input), JSON.stringify(env)],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const events: Array<Record<string, unknown>> = [];
  let out = '';
  let rest = '';
  proc.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
    const parts = (rest + c.toString()).split('\n');
    rest = parts.pop() ?? '';
    for (const p of parts) {
      try {
        events.push(JSON.parse(p) as Record<string, unknown>);
      } catch {
        // not an event line
      }
    }
  });
  proc.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    proc.on('close', (code, signal) => resolve({ code, signal })),
  );
  return {
    proc,
    events,
    output: () => out,
    exited,
    waitEvent: (pred, what) =>
      waitUntil(() => events.find(pred), {
        what: `${what}; output so far: ${out.slice(-2000)}`,
        timeoutMs: 60_000,
      }),
  };
}

/** Same bytes (Buffer.equals: a deep toEqual on megabytes is far too slow). */
export async function expectSameFile(a: string, b: string): Promise<void> {
  const { readFile } = await import('node:fs/promises');
  const [x, y] = await Promise.all([readFile(a), readFile(b)]);
  if (!x.equals(y)) throw new Error(`${b} differs from ${a} (${y.length} vs ${x.length} bytes)`);
}
