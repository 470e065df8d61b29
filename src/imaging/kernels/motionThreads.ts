/**
 * Motion correction on T threads: this one and T − 1 workers, each worker opening the movie itself;
 * the frames' alignment spectra go into one SharedArrayBuffer. The per-frame phases split by frame,
 * each thread claiming the next frame from a shared counter when it is free: it makes the frame's
 * alignment spectrum, and later adds the shifted full frame to a sum spectrum of its own; this thread
 * adds those up. The alignment (coarse grid, then full grid: motionCoarse.ts) is a chain of dependent
 * steps. The coarse grid's short steps run in this thread alone; the full grid's split by half-plane
 * column: for each step every thread computes the product and the column
 * transforms of its columns and copies out the band of rows the search reaches, and this thread
 * finishes the rows and finds the peak (a local step: each thread writes its columns' sums, and this
 * thread combines them, motionLocal.ts). That is the same arithmetic as the in-process run, so the shifts are bit-identical to
 * it; the sum differs from it only by float32 rounding (its frames are added in another order).
 *
 * A cancel (the kernel's signal) terminates the workers at once, whatever they are doing.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ImageFormatError, KernelAbortedError } from '../errors.js';
import { throwIfAborted, yieldToEventLoop, type KernelControl } from '../progress.js';
import type { ImageStack, PlaneArray } from '../types.js';
import type { DoseWeighting } from './doseWeight.js';
import { RealFft2d } from './fft.js';
import { ColumnShare, LocalCorrelator, LocalTables, type AlignResult } from './motionAlign.js';
import { alignCoarseToFine, cropSpectrum } from './motionCoarse.js';
import { LOCAL_SUMS, localBand } from './motionLocal.js';
import {
  AlignSpectrumMaker,
  alignSpectrumLength,
  finishSum,
  FrameSummer,
  type AlignGrid,
} from './motionFrames.js';

type Shift = { x: number; y: number };

export type ToMotionWorker =
  | {
      op: 'spectra';
      path: string;
      grid: AlignGrid;
      pixelSize: number;
      bFactor: number;
      /** Frames 0 … frames − 1, each claimed from `next` by whichever thread is free. */
      frames: number;
      next: SharedArrayBuffer;
      out: SharedArrayBuffer;
    }
  | {
      op: 'alignStart';
      /** The grid of this level (the alignment grid or its coarse crop). */
      w: number;
      h: number;
      frames: number;
      spectra: SharedArrayBuffer;
      initial: Shift[] | undefined;
      k0: number;
      k1: number;
      radius: number;
      band: SharedArrayBuffer;
      sums: SharedArrayBuffer;
    }
  | { op: 'step'; f: number; x: number; y: number; move: Shift | undefined; local: boolean }
  | { op: 'alignEnd' }
  | {
      op: 'sum';
      path: string;
      pixelSize: number;
      dose: DoseWeighting | undefined;
      frames: number;
      next: SharedArrayBuffer;
      shifts: Shift[];
    }
  | { op: 'close' };

export type FromMotionWorker =
  | { op: 'frame'; f: number }
  | { op: 'done'; acc?: Float32Array }
  | {
      op: 'error';
      error: { name: string; message: string; code?: string; file?: string; problem?: string };
    };

const fromSources = import.meta.url.endsWith('.ts');

function startWorker(): Worker {
  // geotiff's 'web-worker' dependency destructures workerData when it loads in any worker thread.
  const options = { workerData: {} };
  if (!fromSources) return new Worker(new URL('./motionWorker.js', import.meta.url), options);
  // Running from the TypeScript sources (tests): load the entry through tsx's API in the thread.
  const api = createRequire(import.meta.url)
    .resolve('tsx/esm/api')
    .replace(/\.cjs$/, '.mjs');
  const entry = new URL('./motionWorker.ts', import.meta.url).href;
  const code = `import(${JSON.stringify(pathToFileURL(api).href)}).then((a) => a.tsImport(${JSON.stringify(entry)}, ${JSON.stringify(entry)}))`;
  return new Worker(code, { ...options, eval: true });
}

/** An error from a worker, as the in-process run would have thrown it (matched by name). */
function rebuild(e: Extract<FromMotionWorker, { op: 'error' }>['error']): Error {
  if (e.name === 'ImageFormatError' && e.file !== undefined && e.problem !== undefined)
    return new ImageFormatError(e.file, e.problem);
  if (e.name === 'RangeError') return new RangeError(e.message);
  const err = new Error(e.message);
  err.name = e.name;
  return err;
}

/** One worker with at most one request in flight. */
class MotionThread {
  private pending:
    | { resolve: (m: FromMotionWorker) => void; reject: (e: unknown) => void; onFrame?: (f: number) => void }
    | undefined;
  private failure: unknown;

  constructor(private readonly worker: Worker) {
    worker.on('message', (m: FromMotionWorker) => {
      const p = this.pending;
      if (!p) return;
      if (m.op === 'frame') p.onFrame?.(m.f);
      else if (m.op === 'error') this.fail(rebuild(m.error));
      else {
        this.pending = undefined;
        p.resolve(m);
      }
    });
    worker.on('error', (err) => this.fail(err));
    worker.on('exit', (code) => this.fail(new Error(`motion correction worker exited (code ${code})`)));
  }

  fail(err: unknown): void {
    this.failure ??= err;
    const p = this.pending;
    this.pending = undefined;
    p?.reject(this.failure);
  }

  request(m: ToMotionWorker, onFrame?: (f: number) => void): Promise<FromMotionWorker> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject, ...(onFrame ? { onFrame } : {}) };
      this.worker.postMessage(m);
    });
  }

  terminate(): Promise<number> {
    return this.worker.terminate();
  }
}

export interface ThreadedMotionParams {
  /** The movie, open in this thread; the workers open its path. */
  stack: ImageStack;
  grid: AlignGrid;
  pixelSize: number;
  bFactor: number;
  maxShift: number;
  iterations: number;
  tolerance: number;
  dose: DoseWeighting | undefined;
  /** This thread and threads − 1 workers. */
  threads: number;
}

/**
 * Shifts (input pixels), the alignment's iterations, and the aligned sum, computed by this thread and
 * threads − 1 workers, this thread taking share 0 of every phase.
 */
export async function correctMotionThreaded(
  p: ThreadedMotionParams,
  ctl: KernelControl,
  report: (phase: 'read' | 'align' | 'sum') => (fraction: number, message: string) => void,
): Promise<AlignResult & { sum: Float32Array }> {
  const { grid: g, threads: T, stack } = p;
  const { path, depth: N } = stack;
  const workers = Array.from({ length: T - 1 }, () => new MotionThread(startWorker()));
  const aborted = () => {
    for (const t of workers)
      t.fail(new KernelAbortedError('motion correction', { cause: ctl.signal?.reason }));
    void Promise.all(workers.map((t) => t.terminate()));
  };
  if (ctl.signal?.aborted) aborted();
  ctl.signal?.addEventListener('abort', aborted, { once: true });
  try {
    let done = 0;
    const counter = (phase: 'read' | 'sum', verb: string) => {
      done = 0;
      const r = report(phase);
      return () => {
        done++;
        r(done / N, `${verb} frame ${done}/${N}`);
      };
    };
    /**
     * The frames this thread claims from `next` (the workers claim theirs from it too, so a thread
     * that starts late or is scheduled less does fewer), one at a time, letting the workers'
     * messages and a cancel through.
     */
    const ownFrames = async (next: Int32Array, each: (f: number) => Promise<void>, tick: () => void) => {
      for (let f = Atomics.add(next, 0, 1); f < N; f = Atomics.add(next, 0, 1)) {
        throwIfAborted(ctl.signal, 'motion correction');
        await each(f);
        tick();
        await yieldToEventLoop();
      }
    };
    /** The last plane this thread read, whose memory its next read reuses. */
    let plane: PlaneArray | undefined;
    const len = alignSpectrumLength(g);
    const spectraBuffer = new SharedArrayBuffer(N * len * 4);
    const onRead = counter('read', 'read');
    const nextRead = new SharedArrayBuffer(4);
    const maker = await AlignSpectrumMaker.create(g, p.pixelSize, p.bFactor);
    try {
      await Promise.all([
        ...workers.map((t) =>
          t.request(
            {
              op: 'spectra',
              path,
              grid: g,
              pixelSize: p.pixelSize,
              bFactor: p.bFactor,
              frames: N,
              next: nextRead,
              out: spectraBuffer,
            },
            onRead,
          ),
        ),
        ownFrames(
          new Int32Array(nextRead),
          async (f) => {
            plane = await stack.readPlane(f, plane);
            maker.make(plane, new Float32Array(spectraBuffer, f * len * 4, len));
          },
          onRead,
        ),
      ]);
    } finally {
      maker.dispose();
    }

    const aligned = await alignCoarseToFine(
      N,
      g.wa,
      g.ha,
      { maxShift: Math.max(1, p.maxShift / g.bin), iterations: p.iterations, tolerance: p.tolerance / g.bin },
      { ...(ctl.signal ? { signal: ctl.signal } : {}), onProgress: report('align') },
      async (w, h, radius, initial) => {
        if (w !== g.wa) {
          // The coarse grid runs in this thread alone: its steps are short (a quarter of the full
          // grid's work), so splitting them costs a round trip to the workers per step for little
          // gain, and much when the machine is busy and a worker waits for a core. Same arithmetic
          // as the split (LocalCorrelator), so the shifts do not change.
          const fft = await RealFft2d.create(w, h);
          const crop = Array.from({ length: N }, (_, f) =>
            cropSpectrum(
              new Float32Array(spectraBuffer, f * len * 4, len),
              g.ha,
              w,
              h,
              new Float32Array(fft.spectrumLength),
            ),
          );
          const c = new LocalCorrelator(crop, fft, radius, initial);
          return { band: (f, s, move, local) => c.band(f, s, move, local), close: () => fft.dispose() };
        }
        // This grid's spectra: the alignment grid's own, or their coarse crop (made here, once).
        const lenL = 2 * (w / 2 + 1) * h;
        const levelBuffer = w === g.wa ? spectraBuffer : new SharedArrayBuffer(N * lenL * 4);
        const spectra = Array.from(
          { length: N },
          (_, f) => new Float32Array(levelBuffer, f * lenL * 4, lenL),
        );
        if (w !== g.wa)
          spectra.forEach((s, f) =>
            cropSpectrum(new Float32Array(spectraBuffer, f * len * 4, len), g.ha, w, h, s),
          );
        const rows = 2 * radius + 3;
        const wc = w / 2 + 1;
        const bandBuffer = new SharedArrayBuffer(2 * wc * rows * 4);
        const band = new Float32Array(bandBuffer);
        const sumsBuffer = new SharedArrayBuffer(LOCAL_SUMS * wc * 8);
        const sums = new Float64Array(sumsBuffer);
        const t = new LocalTables(w, h);
        const out = new Float32Array(w * rows);
        const cut = (k: number) => Math.floor((k * wc) / T);
        const fft = await RealFft2d.create(w, h);
        try {
          await Promise.all(
            workers.map((worker, i) =>
              worker.request({
                op: 'alignStart',
                w,
                h,
                frames: N,
                spectra: levelBuffer,
                initial,
                k0: cut(i + 1),
                k1: cut(i + 2),
                radius,
                band: bandBuffer,
                sums: sumsBuffer,
              }),
            ),
          );
        } catch (err) {
          fft.dispose();
          throw err;
        }
        const own = new ColumnShare(spectra, fft, cut(0), cut(1), radius, band, sums, initial);
        return {
          band: async (f, s, move, local) => {
            const others = Promise.all(
              workers.map((worker) => worker.request({ op: 'step', f, x: s.x, y: s.y, move, local })),
            );
            own.step(f, s.x, s.y, move, local);
            await others;
            return local ? localBand(sums, w, t.ex, t.band) : fft.inverseBand(band, rows, out);
          },
          close: async () => {
            try {
              await Promise.all(workers.map((worker) => worker.request({ op: 'alignEnd' })));
            } finally {
              fft.dispose();
            }
          },
        };
      },
    );
    const shifts = aligned.shifts.map((s) => ({ x: s.x * g.bin, y: s.y * g.bin }));

    const onSum = counter('sum', 'summed');
    const nextSum = new SharedArrayBuffer(4);
    const summer = await FrameSummer.create(g.width, g.height, p.pixelSize, p.dose);
    let parts: FromMotionWorker[];
    let acc: Float32Array;
    try {
      [parts] = await Promise.all([
        Promise.all(
          workers.map((t) =>
            t.request(
              { op: 'sum', path, pixelSize: p.pixelSize, dose: p.dose, frames: N, next: nextSum, shifts },
              onSum,
            ),
          ),
        ),
        ownFrames(
          new Int32Array(nextSum),
          async (f) => {
            plane = await stack.readPlane(f, plane);
            summer.add(plane, f, shifts[f]!);
          },
          onSum,
        ),
      ]);
      acc = summer.sum();
    } finally {
      summer.dispose();
    }
    for (const part of parts) {
      const a = (part as { acc: Float32Array }).acc;
      for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! + a[i]!;
    }
    await Promise.all(workers.map((t) => t.request({ op: 'close' })));
    const sum = await finishSum(acc, g.width, g.height, N, p.pixelSize, p.dose);
    return { ...aligned, shifts, sum };
  } finally {
    ctl.signal?.removeEventListener('abort', aborted);
    await Promise.all(workers.map((t) => t.terminate()));
  }
}
