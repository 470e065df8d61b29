import { describe, expect, it } from 'vitest';
import { testDbName, testMongoUri } from '../helpers/db.js';
import { Proc, run, tempDir, writeSettings } from './proc.js';

function setup(label: string, worker: Record<string, unknown>) {
  const settings = writeSettings(
    { mongoUri: testMongoUri(), dataDir: './var', logLevel: 'debug', worker },
    tempDir(label),
  );
  const env = { JOBD_DATABASE: testDbName(label) };
  const ctl = async (args: string[]) => {
    const r = await run('jobctl', [...args, '--json', '--settings', settings], { env });
    if (r.code !== 0) throw new Error(`jobctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };
  return { settings, env, ctl };
}

describe('jobd signals', () => {
  it('SIGTERM lets a running job finish, then exits 0', async () => {
    const { settings, env, ctl } = setup('sig_drain', { shutdownGraceMs: 30_000 });
    const daemon = new Proc('jobd', ['--settings', settings], { env });
    try {
      await daemon.waitForLine('"msg":"jobd started"');
      const { id } = (await ctl(['enqueue', 'sleep', '--params', '{"ms":1500}'])) as { id: string };
      await daemon.waitForLine(new RegExp(`"jobId":"${id}".*"msg":"job claimed"`));
      daemon.child.kill('SIGTERM');
      await daemon.waitForLine('"msg":"stopping: no new jobs; running jobs may finish"');
    } finally {
      expect((await daemon.exited).code).toBe(0);
    }
    expect(daemon.stdout).toContain('"msg":"job completed"');
    const status = (await ctl(['status'])) as { jobs: Record<string, number> };
    expect(status.jobs.completed).toBe(1);
  });

  // Needs Daemon.stop() to honour a shorter graceMs when called again during a drain (jobdMain calls
  // stop({ graceMs: 0 }) on the second signal); until then jobd leaves by its hard deadline with exit 1.
  it('a second signal stops at once: the running job goes back to the queue', async () => {
    const { settings, env, ctl } = setup('sig_force', { shutdownGraceMs: 120_000, killGraceMs: 1_000 });
    const daemon = new Proc('jobd', ['--settings', settings], { env });
    let id: string | undefined;
    try {
      await daemon.waitForLine('"msg":"jobd started"');
      ({ id } = (await ctl(['enqueue', 'sleep', '--params', '{"ms":120000}'])) as { id: string });
      await daemon.waitForLine(new RegExp(`"jobId":"${id}".*"msg":"job claimed"`));
      daemon.child.kill('SIGTERM');
      await daemon.waitForLine('"msg":"stopping: no new jobs; running jobs may finish"');
      daemon.child.kill('SIGTERM');
      await daemon.waitForLine('second signal');
    } finally {
      expect((await daemon.exited).code).toBe(0);
    }
    const shown = (await ctl(['show', id!])) as { job: { state: string; attempts: number } };
    expect(shown.job.state).toBe('queued');
  });
});
