/**
 * "Fresh machine": no MongoDB anywhere. jobd starts on its embedded default (mongoUri "embedded"),
 * and a one-line `jobctl enqueue ... --wait` with the same settings runs a demo job to completion.
 */
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  JOBCTL_BIN,
  killAllDaemons,
  runCli,
  startDaemonProcess,
  writeDaemonSettings,
} from '../helpers/daemonProcess.js';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

describe('crash: fresh machine', () => {
  afterEach(async () => {
    await killAllDaemons();
  });

  it('jobd on the embedded default; jobctl enqueue echo --wait completes the job', async () => {
    const port = await freePort();
    const s = writeDaemonSettings({ mongoUri: 'embedded', database: 'jobd', extra: { embedded: { port } } });
    const d = await startDaemonProcess(s);
    expect(d.lines().some((l) => l.msg === 'embedded database started')).toBe(true);

    const r = await runCli(
      JOBCTL_BIN,
      ['enqueue', 'echo', '--params', '{"x":1}', '--wait', '--settings', s.file],
      { cwd: s.dir },
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const id = r.stdout.trim().split('\n')[0]!;
    expect(r.stdout).toContain(`job ${id} completed: {"x":1}`);
    await d.waitForLog((l) => l.msg === 'job completed' && l.jobId === id);

    const show = await runCli(JOBCTL_BIN, ['show', id, '--json', '--settings', s.file], { cwd: s.dir });
    expect(show.code).toBe(0);
    const shown = JSON.parse(show.stdout) as { job: { state: string; result: unknown; attempts: number } };
    expect(shown.job).toMatchObject({ state: 'completed', result: { x: 1 }, attempts: 1 });

    expect((await d.stop()).code).toBe(0);
  });
});
