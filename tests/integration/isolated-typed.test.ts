/**
 * Typed built-in job types in isolated mode: the daemon parses the input and validates the output
 * around the child (worker/typedChecks.ts), so the child never loads zod; an input that is not valid
 * when the job starts and an output the type refuses still fail the attempt with their codes.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import { writeMrc } from '../../src/imaging/formats/mrc.js';
import { builtinHandlerPath } from '../../src/jobs/registry.js';
import type { RunOutcome, RunRequest, Sandbox } from '../../src/sandbox/types.js';
import { get } from '../../src/store/index.js';
import type { JobDoc } from '../../src/types.js';
import { executeJob } from '../../src/worker/executor.js';
import { LazyAbort } from '../../src/sandbox/lazyAbort.cjs';
import { collect, startTestDaemon, testConfig } from './daemon-helpers.js';
import { openStoreFixture, type StoreFixture } from './store-helpers.js';

const PROBE = pathToFileURL(join(import.meta.dirname, '../fixtures/zodProbe.mjs')).href;

describe('isolated typed built-ins: the daemon checks, the child loads no zod', () => {
  let f: StoreFixture;
  let client: JobdClient;
  let probeFile: string;
  const saved = {
    NODE_OPTIONS: process.env.NODE_OPTIONS,
    JOBD_TEST_ZOD_PROBE: process.env.JOBD_TEST_ZOD_PROBE,
  };
  beforeAll(() => {
    // The sandbox starts children with the daemon's environment (this process's) plus the job's.
    process.env.NODE_OPTIONS = `${saved.NODE_OPTIONS ?? ''} --import=${PROBE}`.trim();
  });
  afterAll(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  beforeEach(async () => {
    f = await openStoreFixture('isolatedtyped');
    client = await JobdClient.connect({ mongoUri: f.t.uri, database: f.t.dbName });
    probeFile = join(mkdtempSync(join(tmpdir(), 'jobd-zod-probe-')), 'children.ndjson');
    process.env.JOBD_TEST_ZOD_PROBE = probeFile;
  });
  afterEach(async () => {
    await client.close();
    await f.close();
  });

  it('runs noop and sleep in children that never load zod; a bad input fails before any child', async () => {
    const a = (await client.enqueue('noop', null)).job;
    const b = (await client.enqueue('sleep', { ms: 1 })).job;
    // Not checked at enqueue (this client has no settings): the daemon refuses it when it starts.
    const bad = (await client.enqueue('sleep', { ms: -5 }, { maxAttempts: 1 })).job;
    const d = await startTestDaemon(f, {
      jobTypes: {
        noop: { handler: builtinHandlerPath('noop'), mode: 'isolated' },
        sleep: { handler: builtinHandlerPath('sleep'), mode: 'isolated' },
      },
    });
    try {
      await Promise.all([collect(d, 'job:completed', [a._id, b._id]), collect(d, 'job:failed', [bad._id])]);
    } finally {
      await d.stop({ graceMs: 2_000 });
    }
    expect((await get(f.store, a._id))?.state).toBe('completed');
    const slept = await get(f.store, b._id);
    expect(slept?.state).toBe('completed');
    expect(typeof (slept?.result as { sleptMs?: unknown })?.sleptMs).toBe('number');
    const refused = await get(f.store, bad._id);
    expect(refused?.state).toBe('failed');
    expect(refused?.lastError?.code).toBe('JOBD_INVALID_INPUT');
    expect(refused?.lastError?.message).toContain("sleep: the job's input is not valid now");
    expect(refused?.lastError?.message).toContain('params.ms');

    const children = readFileSync(probeFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { zod: boolean });
    // One child per job that passed its input check, none for the refused one; zod in none of them.
    expect(children).toHaveLength(2);
    expect(children.map((c) => c.zod)).toEqual([false, false]);
  });

  it('runs a data type (file_extraction) and a kernel type (fft_power_spectrum) in children without zod', async () => {
    const root = realpathSync(mkdtempSync(join(tmpdir(), 'jobd-typed-data-')));
    const dataDirs = { upload: join(root, 'upload'), converted: join(root, 'converted') };
    for (const d of Object.values(dataDirs)) mkdirSync(d);
    mkdirSync(join(root, 'tree'));
    writeFileSync(join(root, 'tree', 'a.txt'), 'alpha\n');
    execFileSync('tar', ['-cf', join(dataDirs.upload, 'a.tar'), '-C', join(root, 'tree'), 'a.txt']);
    await writeMrc(join(dataDirs.upload, 'm.mrc'), [new Float32Array(64 * 64).map((_, i) => i % 7)], {
      width: 64,
      height: 64,
      mode: 2,
    });
    // The legacy name zip_file: the type's schema maps it, and the core gets the parsed input.
    const x = (
      await client.enqueue('file_extraction', {
        zip_file: join(dataDirs.upload, 'a.tar'),
        extract_dir: join(dataDirs.converted, 'a'),
      })
    ).job;
    const fft = (
      await client.enqueue('fft_power_spectrum', {
        input: join(dataDirs.upload, 'm.mrc'),
        output_mrc: join(dataDirs.converted, 'ps.mrc'),
        output_png: join(dataDirs.converted, 'ps.png'),
        tile_size: 32,
      })
    ).job;
    const d = await startTestDaemon(f, {
      dataDirs,
      jobTypes: {
        file_extraction: { handler: builtinHandlerPath('file_extraction'), mode: 'isolated' },
        fft_power_spectrum: { handler: builtinHandlerPath('fft_power_spectrum'), mode: 'isolated' },
      },
    });
    try {
      await collect(d, 'job:completed', [x._id, fft._id]);
    } finally {
      await d.stop({ graceMs: 2_000 });
    }
    expect((await get(f.store, x._id))?.result).toMatchObject({ format: 'tar', entries: 1, bytes: 6 });
    expect(readFileSync(join(dataDirs.converted, 'a', 'a.txt'), 'utf8')).toBe('alpha\n');
    expect((await get(f.store, fft._id))?.result).toMatchObject({ width: 64, height: 64, size: 32 });
    const children = readFileSync(probeFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { zod: boolean });
    expect(children.map((c) => c.zod)).toEqual([false, false]);
  });

  it("an output the type's schema refuses fails the attempt with JOBD_INVALID_OUTPUT", async () => {
    const config = testConfig(f, {
      jobTypes: { sleep: { handler: builtinHandlerPath('sleep'), mode: 'isolated' } },
    });
    const seen: RunRequest[] = [];
    const returning = (output: unknown): Sandbox =>
      ({
        run: async (req: RunRequest): Promise<RunOutcome> => {
          seen.push(req);
          return { status: 'completed', output, resources: {}, logTail: '' };
        },
      }) as unknown as Sandbox;
    const job = {
      _id: 'j1',
      type: 'sleep',
      params: null,
      attempts: 1,
      maxAttempts: 1,
      seq: 1,
    } as unknown as JobDoc;
    const run = (sandbox: Sandbox) =>
      executeJob(
        { job, token: 't', controller: new LazyAbort(), abortCause: null },
        {
          config,
          sandbox,
          inline: { run: () => Promise.reject(new Error('not inline')) },
          now: () => new Date(),
          random: () => 0,
          onProgress: () => {},
        },
      );

    const bad = await run(returning({ sleptMs: 'soon' }));
    expect(bad?.kind).toBe('fail');
    expect(bad && 'error' in bad ? bad.error.code : null).toBe('JOBD_INVALID_OUTPUT');
    expect(bad && 'error' in bad ? bad.error.message : '').toContain('output.sleptMs');
    // The child got the parsed input (the default applied) and the daemon's word that it checks.
    expect(seen[0]?.params).toEqual({ ms: 1000 });
    expect(seen[0]?.checks).toEqual({ paths: [] });

    const good = await run(returning({ sleptMs: 3 }));
    expect(good?.kind).toBe('complete');
    expect(good && 'result' in good ? good.result : null).toEqual({ sleptMs: 3 });
  });
});
