/**
 * A motion-correction worker thread (motionThreads.ts starts it). It opens the movie itself and
 * takes one request at a time: the alignment spectra of some frames (written into shared memory),
 * its share of the half-plane columns of each alignment step, or the shifted sum of some frames.
 */
import { parentPort } from 'node:worker_threads';
import { openStack } from '../formats/openStack.js';
import type { ImageStack } from '../types.js';
import { RealFft2d } from './fft.js';
import { addShiftDelta, correlateShifted, PhaseRamp } from './motionAlign.js';
import { AlignSpectrumMaker, alignSpectrumLength, FrameSummer } from './motionFrames.js';
import type { ToMotionWorker, FromMotionWorker } from './motionThreads.js';

const port = parentPort;
if (!port) throw new Error('motionWorker runs as a worker thread');

let stack: ImageStack | undefined;
/** This thread's share of the alignment: columns k0 … k1 − 1 of every frame's spectrum and the sum. */
let align:
  | {
      spectra: Float32Array[];
      sum: Float32Array;
      mine: Float32Array;
      fft: RealFft2d;
      ramp: PhaseRamp;
      band: Float32Array;
      k0: number;
      k1: number;
      radius: number;
    }
  | undefined;

function post(m: FromMotionWorker, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(m, transfer);
}

async function movie(path: string): Promise<ImageStack> {
  stack ??= await openStack(path);
  return stack;
}

async function handle(m: ToMotionWorker): Promise<void> {
  switch (m.op) {
    case 'spectra': {
      const s = await movie(m.path);
      const len = alignSpectrumLength(m.grid);
      const maker = await AlignSpectrumMaker.create(m.grid, m.pixelSize, m.bFactor);
      try {
        for (const f of m.frames) {
          maker.make(await s.readPlane(f), new Float32Array(m.out, f * len * 4, len));
          post({ op: 'frame', f });
        }
      } finally {
        maker.dispose();
      }
      post({ op: 'done' });
      return;
    }
    case 'alignStart': {
      const { wa, ha } = m.grid;
      const len = alignSpectrumLength(m.grid);
      const spectra = Array.from(
        { length: m.frames },
        (_, f) => new Float32Array(m.spectra, f * len * 4, len),
      );
      const sum = new Float32Array(len);
      // Column k is floats 2·k·ha … 2·(k + 1)·ha: only this thread's columns are summed and used.
      const a = 2 * m.k0 * ha;
      const b = 2 * m.k1 * ha;
      for (const sp of spectra) for (let i = a; i < b; i++) sum[i] = sum[i]! + sp[i]!;
      align = {
        spectra,
        sum,
        mine: new Float32Array(len),
        fft: await RealFft2d.create(wa, ha),
        ramp: new PhaseRamp(wa, ha),
        band: new Float32Array(m.band),
        k0: m.k0,
        k1: m.k1,
        radius: m.radius,
      };
      post({ op: 'done' });
      return;
    }
    case 'step': {
      if (!align) throw new Error('step before alignStart');
      const { fft, ramp, sum, mine, k0, k1, radius } = align;
      const h = fft.height;
      if (m.move) addShiftDelta(mine, ramp.set(-m.move.x, -m.move.y), h, sum, k0, k1);
      const prod = fft.spectrumBuffer();
      correlateShifted(align.spectra[m.f]!, sum, ramp.set(m.x, m.y), h, mine, prod, k0, k1);
      fft.inverseColumns(k0, k1);
      fft.columnBand(k0, k1, -(radius + 1), 2 * radius + 3, align.band);
      post({ op: 'done' });
      return;
    }
    case 'alignEnd': {
      align?.fft.dispose();
      align = undefined;
      post({ op: 'done' });
      return;
    }
    case 'sum': {
      const s = await movie(m.path);
      const summer = await FrameSummer.create(s.width, s.height, m.pixelSize, m.dose);
      try {
        for (const f of m.frames) {
          summer.add(await s.readPlane(f), f, m.shifts[f]!);
          post({ op: 'frame', f });
        }
      } finally {
        summer.dispose();
      }
      post({ op: 'done', acc: summer.acc }, [summer.acc.buffer as ArrayBuffer]);
      return;
    }
    case 'close': {
      await stack?.close();
      stack = undefined;
      post({ op: 'done' });
      return;
    }
  }
}

port.on('message', (m: ToMotionWorker) => {
  handle(m).catch((err: unknown) => {
    const e = err as { name?: unknown; message?: unknown; code?: unknown; file?: unknown; problem?: unknown };
    post({
      op: 'error',
      error: {
        name: typeof e?.name === 'string' ? e.name : 'Error',
        message: typeof e?.message === 'string' ? e.message : String(err),
        ...(typeof e?.code === 'string' ? { code: e.code } : {}),
        ...(typeof e?.file === 'string' && typeof e.problem === 'string'
          ? { file: e.file, problem: e.problem }
          : {}),
      },
    });
  });
});
