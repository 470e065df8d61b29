/**
 * Imaging kernels beside the references this machine has, in one run. Prints JSON.
 *   fft         2D real FFT of a 4096×4096 float32 image: jobd (PFFFT WebAssembly SIMD) vs
 *               scipy.fft.rfft2 and numpy.fft.rfft2 (single-threaded, same input)
 *   conversion  TIFF stack → OME-Zarr pyramid (Blosc lz4, same chunks) in MB/s: jobd vs a python3-zarr
 *               script doing the same levels; jobd's peak RSS at two input sizes
 *   motion      the same synthetic Poisson movie: jobd vs relion_run_motioncorr --use_own, seconds and
 *               RMS error of the recovered shifts against the known drift
 * Each comparison runs twice, A B A B, with the load average; wall and CPU time for both sides
 * (jobd's FFT runs one thread, as scipy's default workers=None does; RELION gets --j <threads> and jobd's
 * motion correction the same number of worker threads, with a one-thread jobd run beside them).
 * Options: --stack-gib N (default 2), --movie SIZExFRAMES (default 2048x24), --motion-threads N
 * (default 2), --only fft,conversion,motion
 * BENCH_BUILD=<checkout> runs another checkout's build (its dist/, after `npm run build` there) for
 * jobd's FFT and motion correction, for a before/after comparison in the same sitting.
 * Not part of `npm test`.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { MrcWriter } from '../src/imaging/formats/mrc.js';
import type { RealFft2d as RealFft2dType } from '../src/imaging/kernels/fft.js';
import { findPython } from '../tests/fixtures/imaging/python.js';
import { syntheticMovie, type SyntheticMovie } from '../tests/fixtures/imaging/synthetic.js';
import { writeTiffStack } from '../tests/fixtures/imaging/tiffWriter.js';
import { round } from './lib/stats.js';

const { values: args } = parseArgs({
  options: {
    'stack-gib': { type: 'string', default: '2' },
    movie: { type: 'string', default: '2048x24' },
    'motion-threads': { type: 'string', default: '2' },
    only: { type: 'string', default: 'fft,conversion,motion' },
  },
});
const only = new Set(args.only!.split(','));
const ROOT = join(import.meta.dirname, '..');
/** The checkout whose jobd build is measured (FFT and motion correction). */
const BUILD = process.env.BENCH_BUILD;
const { RealFft2d } = (
  BUILD
    ? await import(pathToFileURL(join(BUILD, 'dist/imaging/kernels/fft.js')).href)
    : await import('../src/imaging/kernels/fft.js')
) as { RealFft2d: typeof RealFft2dType };
const out: Record<string, unknown> = {
  machine: { cpus: cpus().length, model: cpus()[0]?.model, loadavgAtStart: loadavg().map((l) => round(l)) },
  build: BUILD ?? ROOT,
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function fftBench(): Promise<Record<string, unknown>> {
  const N = 4096;
  const img = new Float32Array(N * N);
  let s = 1;
  for (let i = 0; i < img.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    img[i] = s / 2 ** 32 - 0.5;
  }
  const fft = await RealFft2d.create(N, N);
  const rowMajor = new Float32Array(fft.spectrumLength);
  const spec = new Float32Array(fft.spectrumLength);
  const back = new Float32Array(N * N);
  fft.forward(img);
  const cpuMs = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e3;
  };
  /**
   * Wall and CPU ms of `f`, 7 runs after one untimed call (as the python script warms each of its
   * functions): min and median of each.
   */
  const timed = (f: () => void) => {
    f();
    const wall: number[] = [];
    const cpu: number[] = [];
    for (let r = 0; r < 7; r++) {
      const t = performance.now();
      const c = cpuMs();
      f();
      cpu.push(cpuMs() - c);
      wall.push(performance.now() - t);
    }
    return {
      wallMs: { min: round(Math.min(...wall)), median: round(median(wall)) },
      cpuMs: { min: round(Math.min(...cpu)), median: round(median(cpu)) },
    };
  };
  const jobdRound = () => ({
    forwardTransposed: timed(() => fft.forward(img)),
    // numpy's [height][width/2 + 1] layout, copied out of WebAssembly memory as numpy returns a new array.
    forwardNumpyLayout: timed(() => fft.forwardRowMajor(img, rowMajor)),
    // The same left in jobd's buffer (a view, as forwardTransposed is timed): the copy's share.
    forwardNumpyLayoutInBuffer: timed(() => fft.forwardRowMajor(img)),
    forwardThenInverse: timed(() => {
      fft.forward(img, spec);
      fft.inverse(spec, back);
    }),
  });
  // The python3 first on PATH (the machine's own numpy and scipy), else Debian's.
  const py = findPython(['numpy', 'scipy'], ['python3', '/usr/bin/python3']);
  const script = `import numpy as np, scipy, scipy.fft, time, json
a = np.random.default_rng(0).standard_normal((${N}, ${N})).astype(np.float32)
res = {'numpy': np.__version__, 'scipy': scipy.__version__, 'threads': 'one (scipy workers=None, numpy pocketfft)'}
for name, f in [('scipy.fft.rfft2', lambda: scipy.fft.rfft2(a)), ('numpy.fft.rfft2', lambda: np.fft.rfft2(a))]:
    f(); ts = []; cs = []
    for i in range(7):
        t = time.perf_counter(); c = time.process_time(); f(); cs.append((time.process_time() - c) * 1e3); ts.append((time.perf_counter() - t) * 1e3)
    ts.sort(); cs.sort(); res[name] = {'wallMs': {'min': round(ts[0], 2), 'median': round(ts[3], 2)}, 'cpuMs': {'min': round(cs[0], 2), 'median': round(cs[3], 2)}}
print(json.dumps(res))`;
  // A B A B: jobd and the references alternate, so both see the same load.
  const rounds: Record<string, unknown>[] = [];
  for (let r = 0; r < 2; r++) {
    rounds.push({
      loadavg: round(loadavg()[0]!),
      jobd: jobdRound(),
      references: py
        ? (JSON.parse(execFileSync(py, ['-c', script], { encoding: 'utf8' })) as unknown)
        : 'skipped: no python3 with numpy and scipy',
    });
  }
  fft.dispose();
  return {
    size: `${N}x${N} float32`,
    jobd: '@echogarden/pffft-wasm (SIMD), one thread, transposes in a WebAssembly SIMD kernel',
    rounds,
  };
}

/** A microscopy-like uint16 stack: a smooth field plus noise, shifted plane to plane. */
async function makeStack(path: string, planes: number, side: number): Promise<void> {
  const base = new Uint16Array(side * side);
  let s = 7;
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      s = (s * 1103515245 + 12345) >>> 0;
      base[y * side + x] = 1000 + Math.round(300 * Math.sin(x / 97) * Math.cos(y / 131)) + (s >>> 26);
    }
  }
  const plane = new Uint16Array(side * side);
  await writeTiffStack(path, { width: side, height: side, depth: planes, dtype: 'uint16' }, (z) => {
    const k = (z * 4099) % base.length;
    plane.set(base.subarray(k), 0);
    plane.set(base.subarray(0, k), base.length - k);
    return plane;
  });
}

function runChild(args: string[]): Record<string, unknown> {
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'bench/lib/imagingChild.ts'), ...args],
    {
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    },
  );
  if (r.status !== 0) throw new Error(`child ${args[0]} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
}

const PY_CONVERT = `import sys, time, json, resource, numpy as np, tifffile, zarr, numcodecs
src, dst, cz, cy, cx = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
t0 = time.perf_counter()
blosc = numcodecs.Blosc(cname='lz4', clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
def half(a):
    h, w = a.shape
    p = np.pad(a.astype(np.float64), ((0, h % 2), (0, w % 2)), mode='edge')
    return np.floor(p.reshape(p.shape[0] // 2, 2, p.shape[1] // 2, 2).mean(axis=(1, 3)) + 0.5).astype(a.dtype)
with tifffile.TiffFile(src) as tf:
    n = len(tf.pages); h, w = tf.pages[0].shape; dt = tf.pages[0].dtype
    shapes = [(h, w)]
    while min(shapes[-1]) >= 256:
        shapes.append(((shapes[-1][0] + 1) // 2, (shapes[-1][1] + 1) // 2))
    g = zarr.open_group(dst, mode='w')
    arrs = [g.create_dataset(str(l), shape=(n,) + s, chunks=(cz, cy, cx), dtype=dt, compressor=blosc, dimension_separator='/') for l, s in enumerate(shapes)]
    nbytes = 0
    for z0 in range(0, n, cz):
        block = np.stack([tf.pages[z].asarray() for z in range(z0, min(n, z0 + cz))])
        nbytes += block.nbytes
        for l, arr in enumerate(arrs):
            if l > 0:
                block = np.stack([half(p) for p in block])
            arr[z0:z0 + block.shape[0]] = block
print(json.dumps({'seconds': time.perf_counter() - t0, 'maxRssMb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 'bytesRead': nbytes, 'levels': len(shapes), 'zarr': zarr.__version__, 'numcodecs': numcodecs.__version__}))`;

async function conversionBench(dir: string): Promise<Record<string, unknown>> {
  const side = 4096;
  const planeBytes = side * side * 2;
  const gib = Number(args['stack-gib']);
  if (!(gib > 0 && gib <= 3.9))
    throw new RangeError(
      `--stack-gib = ${args['stack-gib']} is not allowed: must be in (0, 3.9] (a classic TIFF)`,
    );
  const planes = Math.max(4, Math.round((gib * 2 ** 30) / planeBytes));
  const small = Math.max(2, Math.round(planes / 4));
  const big = join(dir, 'big.tif');
  const little = join(dir, 'small.tif');
  const t = performance.now();
  await makeStack(big, planes, side);
  await makeStack(little, small, side);
  const generateSeconds = (performance.now() - t) / 1000;
  const chunks = ['1', '256', '256'];
  const mb = (bytes: number) => bytes / 1e6;
  const jobdBig = runChild(['convert', big, join(dir, 'jobd-big.zarr'), ...chunks]);
  const jobdSmall = runChild(['convert', little, join(dir, 'jobd-small.zarr'), ...chunks]);
  await rm(join(dir, 'jobd-small.zarr'), { recursive: true, force: true });
  const result: Record<string, unknown> = {
    input: {
      planes,
      side,
      dtype: 'uint16',
      bytes: planes * planeBytes,
      generateSeconds: round(generateSeconds),
    },
    chunks: [1, 256, 256],
    compression: 'blosc lz4 clevel 5, byte shuffle',
    jobd: { ...jobdBig, mbPerSecond: round(mb(planes * planeBytes) / (jobdBig.seconds as number)) },
    jobdPeakRss: {
      [`${planes} planes (${round((planes * planeBytes) / 2 ** 30)} GiB)`]: round(jobdBig.maxRssMb as number),
      [`${small} planes (${round((small * planeBytes) / 2 ** 30)} GiB)`]: round(jobdSmall.maxRssMb as number),
    },
  };
  await rm(join(dir, 'jobd-big.zarr'), { recursive: true, force: true });
  const py = findPython(['zarr', 'numcodecs', 'tifffile', 'numpy']);
  if (!py)
    return {
      ...result,
      reference: 'skipped: no python3 with zarr, numcodecs, tifffile (Debian: python3-zarr python3-tifffile)',
    };
  const r = JSON.parse(
    execFileSync(py, ['-c', PY_CONVERT, big, join(dir, 'py-big.zarr'), ...chunks], { encoding: 'utf8' }),
  ) as Record<string, number>;
  await rm(join(dir, 'py-big.zarr'), { recursive: true, force: true });
  result.pythonZarr = { ...r, mbPerSecond: round(mb(planes * planeBytes) / r.seconds!) };
  return result;
}

function rmsError(movie: SyntheticMovie, shifts: { x: number; y: number }[]): number {
  const d0 = movie.drift[0]!;
  const ex = shifts.map((s, i) => s.x + (movie.drift[i]!.x - d0.x));
  const ey = shifts.map((s, i) => s.y + (movie.drift[i]!.y - d0.y));
  const mx = ex.reduce((a, b) => a + b, 0) / ex.length;
  const my = ey.reduce((a, b) => a + b, 0) / ey.length;
  return Math.sqrt(ex.reduce((a, e, i) => a + (e - mx) ** 2 + (ey[i]! - my) ** 2, 0) / ex.length);
}

async function motionBench(dir: string): Promise<Record<string, unknown>> {
  const [size, frames] = args.movie!.split('x').map(Number) as [number, number];
  const movie = await syntheticMovie(size, frames, { seed: 42, dose: 1.5, contrast: 0.2, totalDrift: 15 });
  const path = join(dir, 'movie.mrc');
  const w = await MrcWriter.create(path, {
    width: size,
    height: size,
    depth: frames,
    mode: 6,
    pixelSize: { x: 1, y: 1, z: 1 },
  });
  for (let i = 0; i < frames; i++) await w.writePlane(i, await movie.frame(i));
  await w.close();
  const bFactor = 150;
  const threads = Number(args['motion-threads']);
  if (!(Number.isInteger(threads) && threads >= 1))
    throw new RangeError(
      `--motion-threads = ${args['motion-threads']} is not allowed: must be an integer ≥ 1`,
    );
  const runJobd = (t: number) => {
    const jobd = runChild(['motion', path, join(dir, 'jobd'), '1', String(bFactor), String(t)]);
    return {
      seconds: round(jobd.seconds as number),
      cpuSeconds: round(jobd.cpuSeconds as number),
      rmsErrorPx: round(rmsError(movie, jobd.shifts as { x: number; y: number }[]), 3),
      binning: jobd.binning,
      iterations: jobd.iterations,
      maxRssMb: round(jobd.maxRssMb as number),
      threads: jobd.threads,
    };
  };
  const result: Record<string, unknown> = {
    movie: { size, frames, dosePerPixelPerFrame: 1.5, totalDriftPx: 15, bFactor },
  };
  const relion = spawnSync('relion_run_motioncorr', ['--version'], { encoding: 'utf8' });
  if (relion.error)
    return {
      ...result,
      jobd: runJobd(threads),
      relion: 'skipped: relion_run_motioncorr not found (Debian: relion)',
    };
  await writeFile(
    join(dir, 'movies.star'),
    `\n# version 30001\n\ndata_optics\n\nloop_\n_rlnOpticsGroupName #1\n_rlnOpticsGroup #2\n_rlnMicrographOriginalPixelSize #3\n_rlnVoltage #4\n_rlnSphericalAberration #5\n_rlnAmplitudeContrast #6\nopticsGroup1 1 1.0 300.0 2.7 0.1\n\n# version 30001\n\ndata_movies\n\nloop_\n_rlnMicrographMovieName #1\n_rlnOpticsGroup #2\nmovie.mrc 1\n`,
  );
  const args2 = [
    '--i',
    'movies.star',
    '--o',
    'relion/',
    '--use_own',
    '--j',
    String(threads),
    '--bfactor',
    String(bFactor),
    '--angpix',
    '1',
    '--voltage',
    '300',
    '--dose_per_frame',
    '1.5',
    '--patch_x',
    '1',
    '--patch_y',
    '1',
    '--skip_defect',
  ];
  // GNU time, when there, gives RELION's CPU seconds (user + system) beside its wall time.
  const gnuTime = spawnSync('/usr/bin/time', ['-f', '%U %S', 'true'], { encoding: 'utf8' }).status === 0;
  const runRelion = (): Record<string, unknown> | string => {
    const t = performance.now();
    const r = gnuTime
      ? spawnSync('/usr/bin/time', ['-f', 'cpu %U %S', 'relion_run_motioncorr', ...args2], {
          cwd: dir,
          encoding: 'utf8',
        })
      : spawnSync('relion_run_motioncorr', args2, { cwd: dir, encoding: 'utf8' });
    const seconds = (performance.now() - t) / 1000;
    if (r.status !== 0) return `failed: ${r.stderr.slice(-500)}`;
    const cpu = /^cpu ([\d.]+) ([\d.]+)$/m.exec(r.stderr);
    // data_global_shift: frame, shift x, shift y — the shift applied to each frame, frame 1 at 0 (as jobd's).
    const star = execFileSync('cat', [join(dir, 'relion/movie.star')], { encoding: 'utf8' });
    const table = star.slice(star.indexOf('data_global_shift'));
    const shifts = [...table.matchAll(/^\s*(\d+)\s+(-?[\d.]+)\s+(-?[\d.]+)\s*$/gm)].map((m) => ({
      x: Number(m[2]),
      y: Number(m[3]),
    }));
    return {
      seconds: round(seconds),
      cpuSeconds: cpu ? round(Number(cpu[1]) + Number(cpu[2])) : 'unknown (no /usr/bin/time)',
      rmsErrorPx:
        shifts.length === frames ? round(rmsError(movie, shifts), 3) : `parsed ${shifts.length} shifts`,
      threads,
    };
  };
  // A B C A B C: each side twice, alternating, so all see the same load.
  const rounds: Record<string, unknown>[] = [];
  for (let r = 0; r < 2; r++) {
    rounds.push({
      loadavg: round(loadavg()[0]!),
      jobd: runJobd(threads),
      relion: runRelion(),
      ...(threads > 1 ? { jobdOneThread: runJobd(1) } : {}),
    });
    await rm(join(dir, 'relion'), { recursive: true, force: true });
  }
  return {
    ...result,
    relionCommand: `relion_run_motioncorr ${args2.join(' ')}`,
    relionVersion: relion.stdout.trim().split('\n')[0],
    rounds,
  };
}

const dir = await mkdtemp(join(tmpdir(), 'jobd-bench-imaging-'));
try {
  if (only.has('fft')) out.fft = await fftBench();
  if (only.has('conversion')) out.conversion = await conversionBench(dir);
  if (only.has('motion')) out.motion = await motionBench(dir);
} finally {
  await rm(dir, { recursive: true, force: true });
}
(out.machine as Record<string, unknown>).loadavgAtEnd = loadavg().map((l) => round(l));
process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
