/**
 * Resources through the real programs: bad `resources` / `needs` settings exit 2 naming the key, the
 * value and what is allowed; a running jobd advertises its capacity and use, which `jobctl workers`
 * shows, and `jobctl status` says why jobs of a type it can never fit wait.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { testDbName, testMongoUri } from '../helpers/db.js';
import { waitUntil } from '../helpers/waitFor.js';
import { loadConfig } from '../../src/config/load.js';
import { runInProcess } from './inProcess.js';
import { Proc, run, tempDir, writeSettings } from './proc.js';

describe('resources settings', { timeout: 180_000 }, () => {
  const cases: [string, unknown, string][] = [
    [
      'a GPU id listed twice',
      { resources: { gpus: [0, 0] } },
      'resources.gpus = [0,0] is not allowed: must be a list of GPU ids (integers from 0 to 1023), each once',
    ],
    [
      'GPUs as a string',
      { resources: { gpus: '0,1' } },
      'resources.gpus = "0,1" is not allowed: must be a list of GPU ids',
    ],
    [
      'memory out of range',
      { resources: { memoryMb: 0 } },
      'resources.memoryMb = 0 is not allowed: must be an integer from 1 to 1073741824 (MiB)',
    ],
    [
      'a negative need',
      { jobTypes: { echo: { needs: { gpus: -1 } } } },
      'jobTypes.echo.needs.gpus = -1 is not allowed: must be an integer from 0 to 1024',
    ],
  ];
  it(`jobd exits 2: ${cases[0]![0]}`, async () => {
    const [, settings, expected] = cases[0]!;
    const r = await run('jobd', ['--settings', writeSettings(settings)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(expected);
  });
  // The same path as the real jobd above (it prints the settings loader's ConfigError and exits 2),
  // for the other keys: the loader's error, without starting a jobd for each.
  for (const [name, settings, expected] of cases.slice(1)) {
    it(`the settings loader refuses: ${name}`, () => {
      let err: (Error & { code?: string }) | undefined;
      try {
        loadConfig({ settingsPath: writeSettings(settings), env: {} });
      } catch (e) {
        err = e as Error;
      }
      expect(err?.name).toBe('ConfigError');
      expect(err?.message).toContain(expected);
    });
  }

  it('jobctl workers shows capacity and use; status says why jobs that never fit wait', async () => {
    const folder = tempDir('resources');
    const gate = join(folder, 'open');
    writeFileSync(
      join(folder, 'gpu.mjs'),
      [
        "import { existsSync } from 'node:fs';",
        'export default async (params) => {',
        '  while (!existsSync(params.gate)) await new Promise((r) => setTimeout(r, 20));',
        '  return { cuda: process.env.CUDA_VISIBLE_DEVICES ?? null };',
        '};',
        '',
      ].join('\n'),
    );
    const settings = writeSettings(
      {
        mongoUri: testMongoUri(),
        dataDir: './var',
        worker: { concurrency: 2, heartbeatMs: 200 },
        resources: { cpus: 4, memoryMb: 4000, gpus: [0, 1] },
        jobTypes: {
          gpu: { handler: './gpu.mjs', needs: { gpus: 1, memoryMb: 1000 } },
          huge: { handler: './gpu.mjs', needs: { gpus: 4 } },
        },
      },
      folder,
    );
    const env = { JOBD_DATABASE: testDbName('ctl_resources') };
    const ctl = (args: string[]) => run('jobctl', [...args, '--settings', settings], { env });
    // In-process (inProcess.ts) for the polls and the second enqueue: each real jobctl costs ~1 CPU-s.
    const here = (args: string[]) => runInProcess([...args, '--settings', settings], { env });
    const daemon = new Proc('jobd', ['--settings', settings], { env });
    try {
      await daemon.waitForLine('"msg":"jobd started"');
      const params = JSON.stringify({ gate });
      const enq = await ctl(['enqueue', 'gpu', '--params', params, '--json']);
      expect(enq.code, enq.stderr).toBe(0);
      const huge = await here(['enqueue', 'huge', '--params', params]);
      expect(huge.code, huge.stderr).toBe(0);

      type Row = { resources: { gpus: number[]; used: { gpus: number[]; memoryMb: number } } };
      const busy = await waitUntil(
        async () => {
          const r = await here(['workers', '--json']);
          const rows = JSON.parse(r.stdout) as Row[];
          return rows[0]?.resources.used.gpus.length === 1 ? rows[0] : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 200, what: 'a worker with one GPU in use' },
      );
      expect(busy.resources).toMatchObject({
        gpus: [0, 1],
        used: { gpus: [0], memoryMb: 1000 },
      });
      const table = await ctl(['workers']);
      expect(table.stdout).toContain('cpus 0/4, memory 1000/4000 MiB, gpus 1/2 [0]');

      const status = await ctl(['status']);
      expect(status.stdout).toContain(
        '1 job of type huge wait: no live daemon has the resources this type needs',
      );
      expect(status.stdout).toContain('needs 4 GPUs (resources.gpus has 2)');

      writeFileSync(gate, '');
      const id = (JSON.parse(enq.stdout) as { id: string }).id;
      await waitUntil(
        async () => {
          const r = await here(['show', id, '--json']);
          const job = (JSON.parse(r.stdout) as { job: { state: string; result?: unknown } }).job;
          return job.state === 'completed' ? job : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 200, what: 'the GPU job completed' },
      ).then((job) => expect(job.result).toEqual({ cuda: '0' }));
    } finally {
      const exit = await daemon.stop();
      expect(exit.code).toBe(0);
    }
  });
});
