import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runTool, startTool, type ToolRunOptions } from '../../src/jobs/lib/tool.js';
import type { ToolDef } from '../../src/jobs/lib/toolTable.js';
import { allGone, isAlive, recordingContext, waitUntil } from './helpers.js';

const SH: ToolDef = {
  name: 'sh',
  program: 'sh',
  debianPackage: 'dash',
  otherRetryable: true,
  exitCodes: { 3: { retryable: false, meaning: 'bad input' } },
};

function sh(script: string, extra: Partial<ToolRunOptions> = {}): ToolRunOptions {
  return { tool: SH, args: ['-c', script, 'sh'], ...extra };
}

describe('tool runner', () => {
  it('turns progress lines (split on \\r and \\n) into ctx.progress and resolves on exit 0', async () => {
    const ctx = recordingContext();
    const res = await runTool(
      sh(`printf 'P 10\\rP 55\\nnoise\\nP 100\\n'`, {
        progress: (line) => {
          const m = /^P (\d+)$/.exec(line);
          return m ? { percent: Number(m[1]), message: `at ${m[1]}` } : undefined;
        },
      }),
      ctx,
    );
    expect(res.exitCode).toBe(0);
    expect(ctx.progressed.map((p) => p.percent)).toEqual([10, 55, 100]);
    expect(ctx.progressed[1]!.message).toBe('at 55');
  });

  it('passes arguments as they are: no shell sees them', async () => {
    const lines: string[] = [];
    const tricky = 'a b; rm -rf /tmp/nothing $(echo x) `id` "q"';
    await runTool(
      sh('printf "%s\\n" "$1"', {
        args: ['-c', 'printf "%s\\n" "$1"', 'sh', tricky],
        onLine: (l) => lines.push(l),
      }),
      recordingContext(),
    );
    expect(lines).toEqual([tricky]);
  });

  it('maps exit codes from the table: listed non-retryable, others retryable; keeps a bounded stderr tail', async () => {
    const ctx = recordingContext();
    const permanent = await runTool(sh('echo "first line" >&2; echo "the reason" >&2; exit 3'), ctx).catch(
      (e: unknown) => e,
    );
    expect(permanent).toMatchObject({
      name: 'ToolFailedError',
      code: 'JOBD_DO_NOT_RETRY',
      exitCode: 3,
      retryable: false,
    });
    expect((permanent as Error).message).toContain('exited with code 3 (bad input)');
    expect((permanent as Error).message).toContain('the reason');

    const passing = await runTool(
      sh(
        'i=0; while [ $i -lt 3000 ]; do echo "noise line $i" >&2; i=$((i+1)); done; echo "last words" >&2; exit 9',
        { stderrTailBytes: 1024 },
      ),
      ctx,
    ).catch((e: unknown) => e);
    expect(passing).toMatchObject({
      name: 'ToolFailedError',
      code: 'JOBD_TOOL_FAILED',
      exitCode: 9,
      retryable: true,
    });
    const tail = (passing as { stderrTail: string }).stderrTail;
    expect(tail.length).toBeLessThanOrEqual(1024);
    expect(tail).toContain('last words');
    expect((passing as Error).message.length).toBeLessThan(2600);
  });

  it('a missing program is JOBD_TOOL_MISSING naming the Debian package', async () => {
    const err = await runTool(
      {
        tool: { ...SH, name: 'frobnicate', program: 'jobd-no-such-program', debianPackage: 'frobnicator' },
        args: [],
      },
      recordingContext(),
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({
      name: 'ToolMissingError',
      code: 'JOBD_TOOL_MISSING',
      debianPackage: 'frobnicator',
    });
    expect((err as Error).message).toContain('apt-get install frobnicator');
  });

  it('removes secrets from lines, the stderr tail and the error', async () => {
    const lines: string[] = [];
    const err = await runTool(
      sh('echo "token=hunter2-secret here"; echo "auth hunter2-secret failed" >&2; exit 5', {
        secrets: ['hunter2-secret'],
        onLine: (l) => lines.push(l),
      }),
      recordingContext(),
    ).then(
      () => new Error('resolved'),
      (e: unknown) => e as Error,
    );
    const seen = JSON.stringify({
      lines,
      message: err.message,
      tail: (err as unknown as { stderrTail: string }).stderrTail,
    });
    expect(seen).not.toContain('hunter2');
    expect(seen).toContain('***');
  });

  it('an abort stops the whole process group, children included, and waits until it is gone', async () => {
    const ctx = recordingContext();
    const pids: number[] = [];
    const run = startTool(
      sh('sleep 300 & echo "child $!"; sleep 300 & echo "child $!"; echo "ready"; wait', {
        onLine: (l) => {
          const m = /^child (\d+)$/.exec(l);
          if (m) pids.push(Number(m[1]));
        },
      }),
      ctx,
    );
    await waitUntil(() => pids.length === 2, { what: 'two children started' });
    ctx.controller.abort(new Error('cancelled by test'));
    const err = await run.done.catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'ToolAbortedError' });
    expect((err as Error).message).toContain('cancelled by test');
    for (const p of [run.pid, ...pids]) expect(await isAlive(p)).toBe(false);
  });

  it('a program that ignores SIGTERM is SIGKILLed after the grace', async () => {
    const ctx = recordingContext();
    let ready = false;
    const run = startTool(
      sh('trap "" TERM; echo ready; while :; do sleep 1; done', {
        killGraceMs: 300,
        onLine: (l) => (ready ||= l === 'ready'),
      }),
      ctx,
    );
    await waitUntil(() => ready, { what: 'the trap installed' });
    const t0 = Date.now();
    ctx.controller.abort();
    await expect(run.done).rejects.toMatchObject({ name: 'ToolAbortedError' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(await isAlive(run.pid)).toBe(false);
  });

  it('the program dies with the process that runs the job (SIGKILL of that process)', async () => {
    const script = fileURLToPath(new URL('../fixtures/data/runTool.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    const toolPid = await waitUntil(
      () => {
        const m = /"toolPid":(\d+)/.exec(out);
        return m ? Number(m[1]) : undefined;
      },
      { what: 'the tool pid' },
    );
    expect(await isAlive(toolPid)).toBe(true);
    child.kill('SIGKILL');
    await allGone([toolPid], 'the orphaned tool');
  });
});
