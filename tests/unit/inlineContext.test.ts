/**
 * The ctx an inline handler gets (InlineRunner, in this process): its fields in the sandbox's order,
 * and ctx.signal, made on first read, the same signal through a spread copy, aborted on timeout.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InlineRunner } from '../../src/worker/inlineRunner.js';
import type { RunRequest } from '../../src/sandbox/types.js';

interface Probe {
  keys: string[];
  abortedAtStart: boolean;
  sameThroughCopy: boolean;
  copyKeys: string[];
  reason?: string;
  abortedLater?: boolean;
}

const probes = globalThis as unknown as { __inlineCtxProbe?: Probe };

/** A handler that records what it sees of ctx, then waits for its signal (or returns at once). */
const HANDLER = `
export default async function (params, ctx) {
  const copy = { ...ctx };
  const probe = {
    keys: Object.keys(ctx),
    abortedAtStart: ctx.signal.aborted,
    sameThroughCopy: copy.signal === ctx.signal,
    copyKeys: Object.keys(copy),
  };
  globalThis.__inlineCtxProbe = probe;
  if (!params.wait) return null;
  await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
  probe.reason = String(ctx.signal.reason?.message ?? ctx.signal.reason);
  probe.abortedLater = copy.signal.aborted;
  return null;
}
`;

function request(dir: string, params: unknown, timeoutMs: number): RunRequest {
  return {
    jobId: 'job-1',
    type: 'probe',
    attempt: 1,
    handler: join(dir, 'probe.mjs'),
    mode: 'pooled',
    params,
    timeoutMs,
    killGraceMs: 5_000,
    logFile: join(dir, 'job-1.log'),
    logTailBytes: 1024,
    progressIntervalMs: 1_000,
  };
}

describe('inline runner: the ctx a handler gets', () => {
  afterEach(() => {
    delete probes.__inlineCtxProbe;
  });

  it('has the sandbox fields in order and a signal that a copy shares and a timeout aborts', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jobd-inline-ctx-'));
    writeFileSync(join(dir, 'probe.mjs'), HANDLER);
    const runner = new InlineRunner({ warn: () => {} });

    const done = await runner.run(request(dir, { wait: false }, 60_000), { onProgress: () => {} });
    expect(done.status).toBe('completed');
    const keys = [
      'jobId',
      'type',
      'attempt',
      'progress',
      'signal',
      'logger',
      'paths',
      'spawn',
      'waitForChildren',
    ];
    expect(probes.__inlineCtxProbe).toEqual({
      keys,
      abortedAtStart: false,
      sameThroughCopy: true,
      copyKeys: keys,
    });

    const timedOut = await runner.run(request(dir, { wait: true }, 50), { onProgress: () => {} });
    expect(timedOut).toMatchObject({ status: 'failed', reason: 'timeout' });
    expect(probes.__inlineCtxProbe).toMatchObject({ abortedLater: true });
    expect(probes.__inlineCtxProbe?.reason).toContain('50 ms');
  });
});
