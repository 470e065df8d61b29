import { mkdir, readdir, readFile, rename, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeMrc } from '../../src/imaging/formats/mrc.js';
import { OmeZarrReader } from '../../src/imaging/formats/omeZarr.js';
import { convertDataset, paramsArg } from '../../src/jobs/data/lib/convert.js';
import { makeDataset } from '../fixtures/data/archives.js';
import { writeTiffStack } from '../fixtures/imaging/tiffWriter.js';
import { expectSameValues } from '../imaging/arrays.js';
import { ngff04Problems } from '../imaging/omeZarrCheck.js';
import {
  allGone,
  expectSameFile,
  failure,
  isAlive,
  recordingContext,
  runCoreChild,
  tempDir,
  waitUntil,
} from './helpers.js';

const script = fileURLToPath(new URL('../fixtures/data/converter.sh', import.meta.url));

let base: { dir: string; cleanup(): Promise<void> };
let upload: string;
let converted: string;
let input: string;
let names: string[];
let env: {
  dataDirs: Record<string, string>;
  converter: { program: string; args: string[] };
  killGraceMs: number;
};

beforeEach(async () => {
  base = await tempDir('convert');
  upload = join(base.dir, 'upload');
  converted = join(base.dir, 'converted');
  await mkdir(converted, { recursive: true });
  input = join(upload, 'uuid-1');
  names = await makeDataset(input, 6, 10_000);
  env = { dataDirs: { upload, converted }, converter: { program: 'sh', args: [script] }, killGraceMs: 2000 };
});
afterEach(() => base.cleanup());

/** Entries of the converted dir other than `keep`: temporaries left behind would show here. */
async function leftovers(keep: string[] = []): Promise<string[]> {
  return (await readdir(converted)).filter((n) => !keep.includes(n));
}

describe('dataset_conversion (command mode)', () => {
  it('runs <program> <input> <output> <sensor> <k=v,...>, parses progress and puts the output in place', async () => {
    const out = join(converted, 'uuid-1');
    const ctx = recordingContext();
    const res = await convertDataset(
      {
        input_path: input,
        output_path: out,
        sensor_type: '4D_Probe',
        conversion_params: { zeta: 'x', alpha: 2, steps: 4 },
      },
      ctx,
      env,
    );
    const args = (await readFile(join(out, 'args.txt'), 'utf8')).split('\n');
    expect(args[0]).toBe(input);
    expect(args[1]).toMatch(/\/converted\/\.uuid-1\.jobd-tmp-/); // written under the temporary name
    expect(args.slice(2, 4)).toEqual(['4D_Probe', 'alpha=2,steps=4,zeta=x']);
    for (const n of names) await expectSameFile(join(input, n), join(out, 'data', n));
    expect(ctx.progressed.map((p) => p.percent)).toEqual([0, 25, 50, 75, 99, 100]);
    expect(res).toMatchObject({ output_path: out, sensor_type: '4D_Probe', output_files: names.length + 2 });
    expect(await leftovers(['uuid-1'])).toEqual([]);

    // A second run replaces the output whole.
    await writeFile(join(out, 'stale.txt'), 'old');
    await convertDataset(
      { input_path: input, output_path: out, sensor_type: 'TIFF' },
      recordingContext(),
      env,
    );
    expect(await readdir(out)).not.toContain('stale.txt');
    expect(paramsArg({})).toBe('');
  });

  it('a failing converter: its stderr in the error, retryable by exit code, nothing put in place', async () => {
    const out = join(converted, 'failing');
    const soft = await failure(
      convertDataset(
        {
          input_path: input,
          output_path: out,
          sensor_type: 'TIFF',
          conversion_params: { fail: 3, steps: 1 },
        },
        recordingContext(),
        env,
      ),
    );
    expect(soft).toMatchObject({ name: 'ToolFailedError', retryable: true, exitCode: 3 });
    expect(soft.message).toContain('converter failed on purpose');
    const hard = await failure(
      convertDataset(
        {
          input_path: input,
          output_path: out,
          sensor_type: 'TIFF',
          conversion_params: { fail: 2, steps: 1 },
        },
        recordingContext(),
        env,
      ),
    );
    expect(hard).toMatchObject({ retryable: false, code: 'JOBD_DO_NOT_RETRY' });
    expect(hard.message).toContain('usage error');
    expect(await leftovers()).toEqual([]);
  });

  it('refuses bad input naming the field, and a missing converter or input', async () => {
    const out = join(converted, 'x');
    const badSensor = await failure(
      convertDataset(
        { input_path: input, output_path: out, sensor_type: '4D probe; rm' },
        recordingContext(),
        env,
      ),
    );
    expect(badSensor.message).toContain('sensor_type');
    const badParam = await failure(
      convertDataset(
        { input_path: input, output_path: out, sensor_type: 'TIFF', conversion_params: { a: 'x,b=y' } },
        recordingContext(),
        env,
      ),
    );
    expect(badParam.message).toMatch(/conversion_params.*\n?.*without commas/s);
    const none = await failure(
      convertDataset(
        { input_path: input, output_path: out, sensor_type: 'TIFF', mode: 'command' },
        recordingContext(),
        { dataDirs: env.dataDirs },
      ),
    );
    expect(none).toMatchObject({ name: 'DataInputError', code: 'JOBD_DO_NOT_RETRY' });
    expect(none.message).toContain('converter.program');
    const missing = await failure(
      convertDataset(
        { input_path: join(upload, 'nope'), output_path: out, sensor_type: 'TIFF' },
        recordingContext(),
        env,
      ),
    );
    expect(missing).toMatchObject({ name: 'DataInputError', code: 'JOBD_DO_NOT_RETRY' });
    const absent = await failure(
      convertDataset({ input_path: input, output_path: out, sensor_type: 'TIFF' }, recordingContext(), {
        ...env,
        converter: { program: '/nonexistent/convert', args: [] },
      }),
    );
    expect(absent).toMatchObject({ name: 'ToolMissingError', code: 'JOBD_TOOL_MISSING' });
  });

  it('a cancel mid-run stops the converter and the processes it started; nothing is put in place', async () => {
    const out = join(converted, 'cancelled');
    const ctx = recordingContext();
    const pids: number[] = [];
    const log = ctx.log;
    ctx.log = (msg, extra) => {
      log(msg, extra);
      if (msg === 'converter: started') pids.push(extra!.pid as number);
      const child = /^converter stdout: child (\d+)$/.exec(msg);
      if (child) pids.push(Number(child[1]));
    };
    const progress = ctx.progress;
    ctx.progress = (percent, message) => {
      progress(percent, message);
      if (percent > 0 && !ctx.signal.aborted) ctx.controller.abort(new Error('cancelled'));
    };
    const err = await failure(
      convertDataset(
        {
          input_path: input,
          output_path: out,
          sensor_type: 'TIFF',
          conversion_params: { steps: 500, hold: 1 },
        },
        ctx,
        env,
      ),
    );
    expect(err).toMatchObject({ name: 'ToolAbortedError' });
    expect(pids).toHaveLength(2);
    for (const pid of pids) expect(await isAlive(pid)).toBe(false);
    expect(await leftovers()).toEqual([]);
  });

  it('a SIGKILLed run leaves no output in place; the re-run cleans up and converts', async () => {
    const out = join(converted, 'killed');
    const input2 = {
      input_path: input,
      output_path: out,
      sensor_type: 'TIFF',
      conversion_params: { steps: 500 },
    };
    const child = runCoreChild('convert', 'convertDataset', input2, env);
    const started = await child.waitEvent((e) => e.log === 'converter: started', 'the converter started');
    await child.waitEvent((e) => typeof e.progress === 'number' && e.progress > 0, 'conversion under way');
    child.proc.kill('SIGKILL');
    await child.exited;
    await allGone(
      [child.proc.pid!, (started.extra as { pid: number }).pid],
      'the killed run and its converter',
    );
    const left = await leftovers();
    expect(left).toHaveLength(1);
    expect(left[0]).toMatch(/^\.killed\.jobd-tmp-/);
    const res = await convertDataset({ ...input2, conversion_params: { steps: 1 } }, recordingContext(), env);
    expect(res.output_files).toBe(names.length + 2);
    await waitUntil(async () => (await leftovers(['killed'])).length === 0, {
      what: 'the temporary removed',
    });
  });
});

describe('dataset_conversion (ome-zarr mode)', () => {
  const W = 300;
  const H = 280;
  const D = 3;
  const pixel = (z: number, i: number) => (i * 37 + z * 9973 + ((i * i) % 7919)) % 65536;
  const plane = (z: number) => Uint16Array.from({ length: W * H }, (_, i) => pixel(z, i));

  it('the default without a converter: a TIFF stack becomes a valid OME-Zarr pyramid, read back equal', async () => {
    const tif = join(upload, 'stack.tif');
    await mkdir(upload, { recursive: true });
    await writeTiffStack(tif, { width: W, height: H, depth: D, dtype: 'uint16', pixelSizeUm: 0.5 }, plane);
    const out = join(converted, 'stack.zarr');
    const ctx = recordingContext();
    const res = await convertDataset(
      { input_path: tif, output_path: out, sensor_type: 'TIFF', chunks: [1, 128, 128], compression: 'zlib' },
      ctx,
      { dataDirs: env.dataDirs },
    );
    expect(res).toMatchObject({
      mode: 'ome-zarr',
      sensor_type: 'TIFF',
      format: 'tiff',
      planes: D,
      blocks_skipped: 0,
      levels: [
        [D, H, W],
        [D, 140, 150],
      ],
    });
    const z = await OmeZarrReader.open(out);
    expect(
      ngff04Problems(
        z.attrs,
        [0, 1].map((l) => z.shape(l)),
      ),
    ).toEqual([]);
    for (let k = 0; k < D; k++) expectSameValues(await z.readPlane(0, k), plane(k), `plane ${k}`);
    const zarray = JSON.parse(await readFile(join(out, '0', '.zarray'), 'utf8')) as Record<string, unknown>;
    expect(zarray).toMatchObject({ chunks: [1, 128, 128], compressor: { id: 'zlib' } });
    // Progress per plane, then 100 once the output is in place.
    const planes = ctx.progressed.filter((p) => /^plane \d+\/3$/.test(p.message ?? ''));
    expect(planes.map((p) => Math.round(p.percent))).toEqual([33, 67, 99]);
    expect(ctx.progressed.at(-1)!.percent).toBe(100);
    expect(await leftovers(['stack.zarr'])).toEqual([]);
  });

  it('a cancel between planes keeps the partial output; the retry skips the verified blocks (MRC found by its bytes)', async () => {
    const mrc = join(upload, 'movie.mrc');
    await mkdir(upload, { recursive: true });
    await writeMrc(mrc, [0, 1, 2].map(plane), { width: W, height: H, mode: 6 });
    const bare = join(upload, 'movie'); // no extension: the format comes from the header's "MAP "
    await rename(mrc, bare);
    const out = join(converted, 'movie.zarr');
    const job = {
      input_path: bare,
      output_path: out,
      mode: 'ome-zarr' as const,
      chunks: [1, 128, 128] as [number, number, number],
    };
    const ctx = recordingContext();
    const progress = ctx.progress;
    ctx.progress = (percent, message) => {
      progress(percent, message);
      if (message === 'plane 2/3') ctx.controller.abort(new Error('cancelled'));
    };
    const err = await failure(convertDataset(job, ctx, { dataDirs: env.dataDirs }));
    expect(err).toMatchObject({ name: 'ToolAbortedError', retryable: true });
    expect(await leftovers()).toEqual(['.movie.zarr.jobd-omezarr-partial']);

    const res = await convertDataset(job, recordingContext(), { dataDirs: env.dataDirs });
    expect(res).toMatchObject({ mode: 'ome-zarr', format: 'mrc', blocks_skipped: 1, planes: D });
    expect(res).not.toHaveProperty('sensor_type');
    const z = await OmeZarrReader.open(out);
    for (let k = 0; k < D; k++) expectSameValues(await z.readPlane(0, k), plane(k), `plane ${k}`);
    expect(await leftovers(['movie.zarr'])).toEqual([]);
  });

  it('refuses bad params naming the field, and a corrupt input without retry naming the file', async () => {
    await mkdir(upload, { recursive: true });
    const tif = join(upload, 'bad.tif');
    await writeTiffStack(
      tif,
      { width: 64, height: 64, depth: 2, dtype: 'uint16' },
      () => new Uint16Array(64 * 64),
    );
    const out = join(converted, 'bad.zarr');
    const noEnv = { dataDirs: env.dataDirs };
    const badChunks = await failure(
      convertDataset({ input_path: tif, output_path: out, chunks: [0, 64, 64] }, recordingContext(), noEnv),
    );
    expect(badChunks.message).toMatch(/chunks/);
    expect(badChunks.message).toContain('an integer from 1 to 65536');
    const badCompression = await failure(
      convertDataset(
        { input_path: tif, output_path: out, compression: 'gzip' as 'zlib' },
        recordingContext(),
        noEnv,
      ),
    );
    expect(badCompression.message).toMatch(/compression/);
    expect(badCompression.message).toMatch(/blosc-lz4.*zlib/s);
    const commandChunks = await failure(
      convertDataset(
        { input_path: tif, output_path: out, sensor_type: 'TIFF', chunks: [1, 64, 64] },
        recordingContext(),
        env,
      ),
    );
    expect(commandChunks).toMatchObject({ name: 'DataInputError', code: 'JOBD_DO_NOT_RETRY' });
    expect(commandChunks.message).toMatch(/^chunks: .*mode "ome-zarr"/);
    const folder = await failure(
      convertDataset({ input_path: input, output_path: out }, recordingContext(), noEnv),
    );
    expect(folder).toMatchObject({ name: 'DataInputError', code: 'JOBD_DO_NOT_RETRY' });
    expect(folder.message).toContain('folder');

    await truncate(tif, 4000);
    const corrupt = await failure(
      convertDataset({ input_path: tif, output_path: out }, recordingContext(), noEnv),
    );
    expect(corrupt).toMatchObject({ name: 'ImageFormatError', code: 'JOBD_DO_NOT_RETRY' });
    expect(corrupt.message).toContain('bad.tif');
    expect(await leftovers()).toEqual([]);
  });
});
