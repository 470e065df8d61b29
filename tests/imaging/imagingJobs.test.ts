/**
 * The imaging job types through one real daemon: fft_power_spectrum, ctf_estimation and
 * motion_correction on small synthetic data (the kernels' accuracy is tested in this folder's other
 * files), a cancel in the middle of a kernel, corrupt inputs, and external_program running a fixture
 * program and, where it is installed, RELION.
 */
import {
  readFileSync,
  realpathSync,
  writeFileSync,
  mkdtempSync,
  mkdirSync,
  rmSync,
  existsSync,
} from 'node:fs';
import { readFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import { loadSettings } from '../../src/config/settings.js';
import { ValidationError } from '../../src/errors.js';
import { MrcStack, MrcWriter, writeMrc } from '../../src/imaging/formats/mrc.js';
import { fillArgs } from '../../src/jobs/imaging/programTemplate.js';
import { findProgram } from '../../src/jobs/lib/tool.js';
import type { JobDoc, JobId } from '../../src/types.js';
import { openTestDb, type TestDb } from '../helpers/db.js';
import {
  killAllDaemons,
  startDaemonProcess,
  writeDaemonSettings,
  type DaemonProcess,
} from '../helpers/daemonProcess.js';
import { waitUntil } from '../helpers/waitFor.js';
import { syntheticMicrograph, syntheticMovie, type SyntheticMovie } from '../fixtures/imaging/synthetic.js';
import { writeTiffStack } from '../fixtures/imaging/tiffWriter.js';
import { fixtureExposures, writeEpuExposure } from '../fixtures/sessions/makeSessions.js';

const FIXTURE_PROGRAM = resolve(import.meta.dirname, '../fixtures/programs/argvReport.py');
const RELION = findProgram('relion_image_handler');
const TERMINAL: JobDoc['state'][] = ['completed', 'failed', 'cancelled'];
const scope = { voltageKv: 300, csMm: 2.7, amplitudeContrast: 0.07, pixelSize: 1.5 };

/** RMS of recovered shifts against the truth (−drift relative to frame 0), mean offset removed. */
function rmsError(movie: SyntheticMovie, shifts: { x: number; y: number }[]): number {
  const d0 = movie.drift[0]!;
  const ex = shifts.map((s, i) => s.x + (movie.drift[i]!.x - d0.x));
  const ey = shifts.map((s, i) => s.y + (movie.drift[i]!.y - d0.y));
  const mx = ex.reduce((a, b) => a + b, 0) / ex.length;
  const my = ey.reduce((a, b) => a + b, 0) / ey.length;
  return Math.sqrt(ex.reduce((a, e, i) => a + (e - mx) ** 2 + (ey[i]! - my) ** 2, 0) / ex.length);
}

// The cases share the daemon and run at once (each with its own files); assertions use the case's expect.
describe.concurrent('imaging job types through a real daemon', () => {
  let t: TestDb;
  let client: JobdClient;
  let daemon: DaemonProcess;
  let base: string;
  let inDir: string;
  let outDir: string;
  let movie: SyntheticMovie;
  let jobTypes: Record<string, { mode: string }>;

  const job = async (id: JobId): Promise<JobDoc> => (await client.store.jobs.findOne({ _id: id })) as JobDoc;
  const settled = (id: JobId, what: string): Promise<JobDoc> =>
    waitUntil(
      async () => {
        const d = await job(id);
        return TERMINAL.includes(d.state) ? d : undefined;
      },
      { what, timeoutMs: 120_000, intervalMs: 100 },
    );
  const enqueue = async (type: string, params: Record<string, unknown>): Promise<JobId> =>
    (await client.enqueue(type, params)).job._id;

  beforeAll(async () => {
    t = await openTestDb('imaging_jobs');
    base = realpathSync(mkdtempSync(join(tmpdir(), 'jobd-imaging-jobs-')));
    inDir = join(base, 'data/in');
    outDir = join(base, 'data/out');
    mkdirSync(inDir, { recursive: true });
    mkdirSync(outDir, { recursive: true });

    // A 512² micrograph of known CTF (pixel size in the header), and a 10-frame 256² movie.
    const truth = { ...scope, defocusU: 15000, defocusV: 14000, angleDeg: 40, bFactor: 60 };
    const img = await syntheticMicrograph(512, truth, 3);
    await writeMrc(join(inDir, 'micrograph.mrc'), [img], {
      width: 512,
      height: 512,
      mode: 2,
      pixelSize: { x: 1.5, y: 1.5, z: 1.5 },
    });
    movie = await syntheticMovie(256, 10, { seed: 11, dose: 2, contrast: 0.25, totalDrift: 8 });
    const w = await MrcWriter.create(join(inDir, 'movie.mrc'), {
      width: 256,
      height: 256,
      depth: 10,
      mode: 6,
      pixelSize: { x: 1, y: 1, z: 1 },
    });
    for (let i = 0; i < 10; i++) await w.writePlane(i, await movie.frame(i));
    await w.close();
    // For the cancel: frames of pure noise, whose alignment never converges (a specimen's does, to a
    // change of exactly 0, within a dozen iterations per grid), so 100 iterations on each grid take
    // seconds even on two threads, and a cancel that is slow to arrive on a loaded machine still finds
    // the kernel running.
    const long = await syntheticMovie(512, 12, { seed: 12, dose: 2, contrast: 0, totalDrift: 8 });
    const wl = await MrcWriter.create(join(inDir, 'long.mrc'), {
      width: 512,
      height: 512,
      depth: 12,
      mode: 6,
    });
    for (let i = 0; i < 12; i++) await wl.writePlane(i, await long.frame(i));
    await wl.close();
    // Corrupt inputs: an MRC and a TIFF cut short (the MRC's header promises more; the TIFF loses
    // its image directory, written last).
    const whole = readFileSync(join(inDir, 'micrograph.mrc'));
    writeFileSync(join(inDir, 'truncated.mrc'), whole.subarray(0, 1024 + 1000));
    const tif = join(base, 'whole.tif');
    await writeTiffStack(
      tif,
      { width: 64, height: 64, depth: 1, dtype: 'uint16' },
      () => new Uint16Array(4096),
    );
    writeFileSync(join(inDir, 'truncated.tif'), readFileSync(tif).subarray(0, 3000));

    const settings = writeDaemonSettings({
      mongoUri: t.uri,
      database: t.dbName,
      dir: join(base, 'daemon'),
      // A long kill grace: a job stopped well within it stopped by itself, not by SIGKILL. A lease that
      // outlasts a starved heartbeat on a loaded machine (no crash here), renewed often so a cancel is
      // seen soon.
      worker: { concurrency: 6, killGraceMs: 30_000, leaseMs: 20_000, heartbeatMs: 500 },
      defaults: { retry: { baseMs: 100, factor: 2, capMs: 500, jitter: 0 } },
      extra: {
        dataDirs: { in: inDir, out: outDir },
        programs: {
          report: {
            path: FIXTURE_PROGRAM,
            args: ['--label', '{label}', '--in', '{input}', '--report', '{out}/report.json', '--n={count}'],
            outputs: ['{out}/report.json'],
            progress: 'step (\\d+)/(\\d+)',
          },
          report_missing: {
            path: FIXTURE_PROGRAM,
            args: ['--report', '{out}/report.json', '--no-report'],
            outputs: ['{out}/report.json'],
          },
          holder: {
            path: FIXTURE_PROGRAM,
            args: ['--hold', '{out}/pids.json'],
            progress: 'step (\\d+)/(\\d+)',
          },
          relion_power: {
            path: 'relion_image_handler',
            args: ['--i', '{input}', '--o', '{output}', '--power'],
            outputs: ['{output}'],
          },
        },
      },
    });
    const config = loadSettings({ file: settings.file, env: {} });
    jobTypes = config.jobTypes;
    client = await JobdClient.connect({
      mongoUri: t.uri,
      database: t.dbName,
      jobTypes: config.jobTypes,
      dataDirs: config.dataDirs,
    });
    daemon = await startDaemonProcess(settings);
  }, 120_000);

  afterAll(async () => {
    await killAllDaemons();
    await client?.close();
    await t?.close();
    if (base) rmSync(base, { recursive: true, force: true });
  });

  it('runs fft, ctf and motion correction to typed results and whole outputs, isolated', async ({
    expect,
  }) => {
    const ids = {
      fft: await enqueue('fft_power_spectrum', {
        input: join(inDir, 'micrograph.mrc'),
        output_mrc: join(outDir, 'ps/spectrum.mrc'),
        output_png: join(outDir, 'ps/spectrum.png'),
        tile_size: 256,
        tiles: 4,
      }),
      ctf: await enqueue('ctf_estimation', {
        input: join(inDir, 'micrograph.mrc'),
        diagnostic_png: join(outDir, 'ctf/diag.png'),
        tile_size: 256,
      }),
      motion: await enqueue('motion_correction', {
        input: join(inDir, 'movie.mrc'),
        output_sum: join(outDir, 'motion/sum.mrc'),
        output_shifts: join(outDir, 'motion/shifts.json'),
        b_factor: 100,
      }),
    };
    const fft = await settled(ids.fft, 'fft_power_spectrum');
    const ctf = await settled(ids.ctf, 'ctf_estimation');
    const motion = await settled(ids.motion, 'motion_correction');
    for (const d of [fft, ctf, motion]) {
      expect(d.state, `${d.type}: ${JSON.stringify(d.errors)}`).toBe('completed');
      expect(
        d.progress?.percent,
        'progress reported (the last update may be coalesced away)',
      ).toBeGreaterThan(0);
      expect((d.result as { peak_rss_bytes: number }).peak_rss_bytes).toBeGreaterThan(20 * 1024 * 1024);
    }
    expect(jobTypes.fft_power_spectrum?.mode).toBe('isolated');

    expect(fft.result).toMatchObject({ width: 512, height: 512, size: 256, tiles_used: 4 });
    const ps = await MrcStack.open(join(outDir, 'ps/spectrum.mrc'));
    expect([ps.width, ps.height, ps.depth, ps.dtype]).toEqual([256, 256, 1, 'float32']);
    await ps.close();
    const png = PNG.sync.read(await readFile(join(outDir, 'ps/spectrum.png')));
    expect([png.width, png.height]).toEqual([256, 256]);

    const c = ctf.result as Record<string, number | string>;
    expect(c.pixel_size_from).toBe('header');
    expect(c.pixel_size).toBeCloseTo(1.5, 5);
    expect(Math.abs((c.defocus_u as number) - 15000)).toBeLessThan(500);
    expect(Math.abs((c.defocus_v as number) - 14000)).toBeLessThan(500);
    expect(Math.abs((c.astigmatism_angle as number) - 40)).toBeLessThan(5);
    expect(c.score).toBeGreaterThan(0.2);
    expect(c.fit_resolution).toBeLessThan(8);
    expect(PNG.sync.read(await readFile(join(outDir, 'ctf/diag.png'))).width).toBe(256);

    const m = motion.result as {
      frames: number;
      shifts: { x: number; y: number }[];
      output_sum: string;
      threads: number;
    };
    expect(m.frames).toBe(10);
    // Two worker threads by default, capped at the machine's CPUs (the type declares no needs).
    expect(m.threads).toBe(Math.min(2, availableParallelism()));
    expect(rmsError(movie, m.shifts)).toBeLessThan(0.25);
    const traj = JSON.parse(await readFile(join(outDir, 'motion/shifts.json'), 'utf8')) as { frames: number };
    expect(traj.frames).toBe(10);
    const sum = await MrcStack.open(join(outDir, 'motion/sum.mrc'));
    expect([sum.width, sum.height, sum.depth]).toEqual([256, 256, 1]);
    await sum.close();
  }, 180_000);

  it('session_import runs an EPU exposure through the real kernels: motion, CTF, power spectrum, summary', async ({
    expect,
  }) => {
    // One exposure whose movie drifts over a specimen of known CTF; the XML gives its pixel size and dose.
    const truth = { ...scope, defocusU: 15000, defocusV: 14000, angleDeg: 40, bFactor: 60 };
    const specimen = await syntheticMicrograph(256, truth, 8, 0);
    const drifting = await syntheticMovie(256, 6, {
      seed: 4,
      dose: 20,
      contrast: 0.3,
      totalDrift: 6,
      specimen,
    });
    const exposure = {
      ...fixtureExposures('k', 1)[0]!,
      pixelSize: 1.5,
      frames: 6,
      dose: (6 * 20) / 1.5 ** 2,
      voltage: 300,
    };
    const session = join(inDir, 'session-epu');
    const moviePath = await writeEpuExposure(session, exposure, 0, async (path, frames) => {
      const w = await MrcWriter.create(path, { width: 256, height: 256, depth: frames, mode: 6 });
      for (let i = 0; i < frames; i++) await w.writePlane(i, await drifting.frame(i));
      await w.close();
    });
    const out = join(outDir, 'session-epu');
    const id = await enqueue('session_import', { session_dir: session, output_dir: out, settle_ms: 0 });
    const done = await settled(id, 'the session import');
    expect(done.state, JSON.stringify(done.lastError)).toBe('completed');
    const kids = (await client.store.jobs.find({ parentId: id }).toArray()) as JobDoc[];
    expect(kids.map((k) => k.type).sort()).toEqual([
      'ctf_estimation',
      'fft_power_spectrum',
      'motion_correction',
    ]);
    for (const k of kids) expect(k.state, `${k.type}: ${JSON.stringify(k.errors)}`).toBe('completed');
    const result = (type: string) => kids.find((k) => k.type === type)!.result as Record<string, unknown>;
    const motion = result('motion_correction') as { input: string; shifts: { x: number; y: number }[] };
    expect(motion.input).toBe(moviePath);
    expect(rmsError(drifting, motion.shifts)).toBeLessThan(0.5);
    expect(result('motion_correction').dose_weighted).toBe(true);
    const ctf = result('ctf_estimation') as { defocus_u: number; defocus_v: number; pixel_size: number };
    expect(ctf.pixel_size).toBeCloseTo(1.5, 5);
    expect(Math.abs(ctf.defocus_u - 15000), `defocus U ${ctf.defocus_u}`).toBeLessThan(1000);
    expect(Math.abs(ctf.defocus_v - 14000), `defocus V ${ctf.defocus_v}`).toBeLessThan(1000);
    const ps = await MrcStack.open(result('fft_power_spectrum').output_mrc as string);
    expect([ps.width, ps.height]).toEqual([256, 256]);
    await ps.close();
    const summary = (done.result as { completed: number; summary: Record<string, unknown>[] }).summary;
    expect((done.result as { completed: number }).completed).toBe(1);
    expect(summary[0]).toMatchObject({ state: 'completed', defocus_u: ctf.defocus_u });
  }, 180_000);

  it('stops a kernel at a cancel mid-run: the child exits by itself, long before its kill grace', async ({
    expect,
  }) => {
    // 100 iterations per grid that never converge: seconds of alignment unless it stops.
    const id = await enqueue('motion_correction', {
      input: join(inDir, 'long.mrc'),
      output_sum: join(outDir, 'cancelled/sum.mrc'),
      output_shifts: join(outDir, 'cancelled/shifts.json'),
      iterations: 100,
      tolerance: 1e-9,
    });
    await waitUntil(
      async () => {
        const p = (await job(id)).progress?.percent ?? 0;
        return p >= 39 && p < 66; // inside the alignment iterations (38% once every frame is read)
      },
      { what: 'motion_correction to be aligning', timeoutMs: 90_000, intervalMs: 50 },
    );
    const cancelledAt = Date.now();
    await client.cancel(id);
    await daemon.waitForLog((l) => l.jobId === String(id) && /lease lost/.test(l.msg), { timeoutMs: 60_000 });
    const stoppedMs = Date.now() - cancelledAt;
    // SIGKILL comes after 30 s; the kernel saw the abort between frames and returned.
    expect(stoppedMs, `stopped ${stoppedMs} ms after the cancel`).toBeLessThan(15_000);
    expect((await job(id)).state).toBe('cancelled');
    expect(existsSync(join(outDir, 'cancelled/sum.mrc'))).toBe(false);
  }, 120_000);

  it('fails a corrupt MRC or TIFF at once, naming the file and the problem', async ({ expect }) => {
    const mrc = await enqueue('fft_power_spectrum', {
      input: join(inDir, 'truncated.mrc'),
      output_mrc: join(outDir, 'bad/ps.mrc'),
      output_png: join(outDir, 'bad/ps.png'),
    });
    const tif = await enqueue('ctf_estimation', { input: join(inDir, 'truncated.tif'), pixel_size: 1 });
    for (const [id, file, problem] of [
      [mrc, 'truncated.mrc', /truncated or not an MRC file/],
      [
        tif,
        'truncated.tif',
        /first image directory is at byte \d+, past the end of the 3000-byte file: truncated/,
      ],
    ] as const) {
      const d = await settled(id, `the ${file} job to fail`);
      expect(d.state).toBe('failed');
      expect(d.attempts, `not retried: ${JSON.stringify(d.errors)}`).toBe(1);
      expect(d.lastError?.name).toBe('ImageFormatError');
      expect(d.lastError?.message).toContain(join(inDir, file));
      expect(d.lastError?.message).toMatch(problem);
    }
    // A parameter the kernel refuses for this image fails the same way, named as the job's param.
    const big = await enqueue('fft_power_spectrum', {
      input: join(inDir, 'micrograph.mrc'),
      output_mrc: join(outDir, 'bad/big.mrc'),
      output_png: join(outDir, 'bad/big.png'),
      tile_size: 1024,
    });
    const b = await settled(big, 'the oversized tile job to fail');
    expect([b.state, b.attempts, b.lastError?.name]).toEqual(['failed', 1, 'DataInputError']);
    expect(b.lastError?.message).toContain('params.tile_size = 1024 is larger than the 512×512 image');
    expect(existsSync(join(outDir, 'bad'))).toBe(false);
  }, 60_000);

  it('refuses bad input at enqueue, naming the field', async ({ expect }) => {
    await expect(
      client.enqueue('fft_power_spectrum', {
        input: join(inDir, 'micrograph.png'),
        output_mrc: join(outDir, 'x.mrc'),
        output_png: '/etc/x.png',
      }),
    ).rejects.toSatisfy((e: unknown) => {
      const msg = (e as Error).message;
      return (
        e instanceof ValidationError &&
        msg.includes('params.input') &&
        msg.includes('MRC or TIFF') &&
        msg.includes('params.output_png')
      );
    });
  });

  it('external_program: slots stay single arguments, the GPU goes in its variable, progress and outputs are read', async ({
    expect,
  }) => {
    const label = 'two words; rm -rf / && echo "$HOME" `id`';
    const id = await enqueue('external_program', {
      program: 'report',
      inputs: { input: join(inDir, 'micrograph.mrc') },
      outputs: { out: join(outDir, 'ext1') },
      values: { label, count: 3 },
      gpus: [1, 3],
    });
    const missing = await enqueue('external_program', {
      program: 'report_missing',
      outputs: { out: join(outDir, 'ext2') },
    });
    const unknown = await enqueue('external_program', { program: 'nope', values: {} });
    const d = await settled(id, 'the report program');
    expect(d.state, JSON.stringify(d.errors)).toBe('completed');
    const report = JSON.parse(readFileSync(join(outDir, 'ext1/report.json'), 'utf8')) as {
      argv: string[];
      gpus: string;
    };
    expect(report.argv).toEqual([
      '--label',
      label,
      '--in',
      join(inDir, 'micrograph.mrc'),
      '--report',
      join(outDir, 'ext1/report.json'),
      '--n=3',
    ]);
    expect(report.gpus).toBe('1,3');
    expect(d.result).toMatchObject({ program: 'report', exit_code: 0, gpus: '1,3', args: report.argv });
    expect((d.result as { outputs: { path: string; bytes: number }[] }).outputs[0]!.bytes).toBeGreaterThan(
      10,
    );
    expect(d.progress?.percent, 'progress lines read').toBeGreaterThanOrEqual(25);

    const m = await settled(missing, 'the program that skips its output');
    expect(m.state).toBe('failed');
    expect(m.attempts).toBe(1);
    expect(m.lastError?.message).toContain(`did not write ${join(outDir, 'ext2/report.json')}`);
    const u = await settled(unknown, 'the unknown program');
    expect(u.state).toBe('failed');
    expect(u.lastError?.message).toMatch(/"nope" is not a program in the settings: allowed: report, /);
  }, 60_000);

  it('external_program: a cancel stops the program and everything it started', async ({ expect }) => {
    mkdirSync(join(outDir, 'ext3'));
    const id = await enqueue('external_program', {
      program: 'holder',
      outputs: { out: join(outDir, 'ext3') },
    });
    const pidFile = join(outDir, 'ext3/pids.json');
    const pids = await waitUntil(
      async () =>
        existsSync(pidFile)
          ? (JSON.parse(readFileSync(pidFile, 'utf8')) as Record<string, number>)
          : undefined,
      { what: 'the held program to start its grandchild', timeoutMs: 60_000 },
    );
    await waitUntil(async () => ((await job(id)).progress?.percent ?? 0) >= 50, {
      what: "the program's progress line to be read",
      timeoutMs: 30_000,
    });
    await client.cancel(id);
    const alive = (pid: number): boolean => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        return !/^\S+ \(.*\) [ZX]/.test(stat);
      } catch {
        return false;
      }
    };
    await waitUntil(() => !alive(pids.program!) && !alive(pids.grandchild!), {
      what: 'the program and its grandchild to be gone',
      timeoutMs: 30_000,
    });
    expect((await job(id)).state).toBe('cancelled');
  }, 120_000);

  it.skipIf(!RELION)(
    'external_program runs RELION 3.1 (relion_image_handler --power)',
    async ({ expect }) => {
      const id = await enqueue('external_program', {
        program: 'relion_power',
        inputs: { input: join(inDir, 'micrograph.mrc') },
        outputs: { output: join(outDir, 'relion/power.mrc') },
      });
      const d = await settled(id, 'relion_image_handler');
      expect(d.state, JSON.stringify(d.errors)).toBe('completed');
      const out = await MrcStack.open(join(outDir, 'relion/power.mrc'));
      expect([out.width, out.height]).toEqual([512, 512]);
      await out.close();
      expect((d.result as { peak_rss_bytes: number }).peak_rss_bytes).toBeGreaterThanOrEqual(0);
    },
    60_000,
  );
  if (!RELION)
    console.log('skipped the RELION case: relion_image_handler is not installed (apt-get install relion)');
});

describe('program templates', () => {
  it('fill each argument whole, with literal braces, and name a slot left without a value', () => {
    const program = {
      path: 'x',
      args: ['--expr={{{a}}}', '{a}{b}', 'plain'],
      outputs: ['{b}/out.mrc'],
      gpuEnv: 'CUDA_VISIBLE_DEVICES',
      permanentExitCodes: [],
    };
    expect(fillArgs('p', program, { a: 'x y', b: '$(id);' })).toEqual({
      args: ['--expr={x y}', 'x y$(id);', 'plain'],
      outputs: ['$(id);/out.mrc'],
    });
    expect(() => fillArgs('p', program, { a: '1' })).toThrow(
      'programs.p.args[1] "{a}{b}": the slot {b} has no value: give it in params.inputs, params.outputs or params.values (given: a)',
    );
  });
});

describe('settings: programs', () => {
  it('names the field, the value and what is allowed', () => {
    const dir = mkdtempSync(join(tmpdir(), 'jobd-programs-'));
    try {
      const file = join(dir, 'settings.json');
      writeFileSync(
        file,
        JSON.stringify({
          programs: {
            ok: { path: '/bin/true', args: ['{a}'] },
            '1bad': { path: '/bin/true' },
            stray: { path: 'x', args: ['{a'], progress: '\\d+%' },
            typo: { path: 'x', arg: [] },
          },
        }),
      );
      let message = '';
      try {
        loadSettings({ file, env: {} });
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toContain(
        'settings: programs.1bad is not allowed as a name: program names start with a letter',
      );
      expect(message).toContain('settings: programs.stray.args.0 = "{a" is not allowed: has a stray brace');
      expect(message).toContain(
        'settings: programs.stray.progress = "\\\\d+%" is not allowed: must be a regular expression with 1 group',
      );
      expect(message).toContain(
        'settings: programs.typo.arg = [] is not allowed: unknown key; did you mean "programs.typo.args"?',
      );
      expect(message).not.toContain('programs.ok');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
