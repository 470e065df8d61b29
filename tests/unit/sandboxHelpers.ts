/**
 * Shared by the sandbox test files: a sandbox per test (closed after it), job requests for the
 * fixtures in tests/fixtures/handlers, and outcome helpers. Real child processes throughout.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { afterAll, afterEach, beforeAll, expect, vi } from 'vitest';
import {
  createSandbox,
  type AbortSource,
  type RunOutcome,
  type RunRequest,
  type Sandbox,
  type SandboxOptions,
} from '../../src/sandbox/index.js';

export const fixtures = resolve(import.meta.dirname, '../fixtures/handlers');
export const handler = (name: string): string => join(fixtures, name);

let dir = '';
let seq = 0;
const sandboxes: Sandbox[] = [];

/** Call once at the top of a test file: a temp folder for logs, and every sandbox closed after each test. */
export function useSandboxes(): { dir: () => string } {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'jobd-sandbox-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(async () => {
    await Promise.all(sandboxes.splice(0).map((s) => s.close()));
  });
  return { dir: () => dir };
}

export function sandbox(opts: Partial<SandboxOptions> = {}): Sandbox {
  const s = createSandbox({
    maxJobsPerChild: 100,
    maxRssBytes: 4 * 1024 ** 3,
    sampleIntervalMs: 20,
    killGraceMs: 300,
    maxChildren: 4,
    ...opts,
  });
  sandboxes.push(s);
  return s;
}

/**
 * Call once per file (or describe block) whose children must be the compiled sandbox's (dist/), as jobd
 * runs them for JavaScript handlers: the returned factory makes sandboxes of dist/sandbox, each closed
 * after its test. Needs `npm run build`.
 */
export function useCompiledSandboxes(): (opts?: Partial<SandboxOptions>) => Sandbox {
  let create: typeof createSandbox;
  const open: Sandbox[] = [];
  beforeAll(async () => {
    const dist = join(resolve(import.meta.dirname, '../..'), 'dist/sandbox/index.js');
    create = ((await import(pathToFileURL(dist).href)) as { createSandbox: typeof createSandbox })
      .createSandbox;
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
  });
  return (opts = {}) => {
    const s = create({
      maxJobsPerChild: 100,
      maxRssBytes: 4 * 1024 ** 3,
      sampleIntervalMs: 50,
      killGraceMs: 300,
      maxChildren: 2,
      ...opts,
    });
    open.push(s);
    return s;
  };
}

/** A request for fixture `name` (or an absolute handler path). */
export function request(name: string, over: Partial<RunRequest> = {}): RunRequest {
  const jobId = `job-${++seq}`;
  return {
    jobId,
    type: name.replace(/^.*\//, '').replace(/\.\w+$/, ''),
    attempt: 1,
    handler: name.startsWith('/') ? name : handler(name),
    mode: 'pooled',
    params: {},
    timeoutMs: 60_000,
    killGraceMs: 300,
    logFile: join(dir, 'logs', 'nested', `${jobId}.log`),
    logTailBytes: 4096,
    progressIntervalMs: 1000,
    ...over,
  };
}

/** Runs a job whose handler reports `pid:<n>` as its first progress; resolves the pid as soon as it is known. */
export function runReportingPid(
  s: Sandbox,
  req: RunRequest,
  /** An AbortSignal (hooks.signal) or another abort source (hooks.abort, as the daemon passes). */
  abort?: AbortSignal | AbortSource,
): { pid: Promise<number>; outcome: Promise<RunOutcome> } {
  let gotPid!: (pid: number) => void;
  const pid = new Promise<number>((r) => (gotPid = r));
  const outcome = s.run(req, {
    onProgress: (_p, message) => {
      const m = /^pid:(\d+)$/.exec(message ?? '');
      if (m) gotPid(Number(m[1]));
    },
    ...(abort instanceof AbortSignal ? { signal: abort } : abort ? { abort } : {}),
  });
  return { pid, outcome };
}

/**
 * tests/fixtures/sandboxParent.ts in a process of its own (a sandbox owner to SIGKILL), running its
 * never-ending isolated job; `mode` 'helper' starts that job's child through the spawn helper.
 * Resolves the process and the job child's pid (printed as `pid:<n>`), once known.
 */
export async function sandboxParent(
  logDir: string,
  mode?: 'helper',
): Promise<{ parent: ChildProcessWithoutNullStreams; pid: number; exited: Promise<unknown> }> {
  const file = resolve(import.meta.dirname, '../fixtures/sandboxParent.ts');
  const parent = spawn(process.execPath, ['--import', 'tsx', file, logDir, ...(mode ? [mode] : [])], {
    stdio: ['ignore', 'pipe', 'inherit'],
  }) as unknown as ChildProcessWithoutNullStreams;
  const exited = new Promise((r) => parent.once('exit', r));
  let out = '';
  parent.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const pid = await vi.waitFor(
    () => {
      const m = /pid:(\d+)/.exec(out);
      if (!m) throw new Error(`no pid yet from the parent: ${JSON.stringify(out)}`);
      return Number(m[1]);
    },
    { timeout: 30_000, interval: 50 },
  );
  return { parent, pid, exited };
}

export function expectGone(pid: number): void {
  expect(() => process.kill(pid, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }));
}

/** An outcome for a failure message: outputs can be megabytes (and BigInt, which JSON refuses). */
function show(o: RunOutcome): string {
  let text: string;
  try {
    text = JSON.stringify(o, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
  } catch {
    text = String(o.status);
  }
  return text.length > 2000 ? `${text.slice(0, 2000)}... (${text.length} characters)` : text;
}

export function completed(o: RunOutcome): Extract<RunOutcome, { status: 'completed' }> {
  if (o.status !== 'completed') throw new Error(`expected completed, got ${show(o)}`);
  return o;
}

export function failed(o: RunOutcome): Extract<RunOutcome, { status: 'failed' }> {
  if (o.status !== 'failed') throw new Error(`expected failed, got ${show(o)}`);
  return o;
}

export const noHooks = { onProgress: (): void => {} };
