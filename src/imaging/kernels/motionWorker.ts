/**
 * A motion-correction worker thread (motionThreads.ts starts it). It opens the movie itself and
 * takes one request at a time: the alignment spectra of the frames it claims (written into shared
 * memory), its share of the half-plane columns of each alignment step, or the shifted sum of the
 * frames it claims.
 */
import { parentPort } from 'node:worker_threads';
import { openStack } from '../formats/openStack.js';
import type { ImageStack, PlaneArray } from '../types.js';
import { RealFft2d } from './fft.js';
import { ColumnShare } from './motionAlign.js';
import { AlignSpectrumMaker, alignSpectrumLength, FrameSummer } from './motionFrames.js';
import type { ToMotionWorker, FromMotionWorker } from './motionThreads.js';

const port = parentPort;
if (!port) throw new Error('motionWorker runs as a worker thread');

let stack: ImageStack | undefined;
/** The last plane read, whose memory the next read reuses. */
let plane: PlaneArray | undefined;
/** This thread's share of the alignment, between alignStart and alignEnd. */
let align: { share: ColumnShare; fft: RealFft2d } | undefined;

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
        const next = new Int32Array(m.next);
        for (let f = Atomics.add(next, 0, 1); f < m.frames; f = Atomics.add(next, 0, 1)) {
          plane = await s.readPlane(f, plane);
          maker.make(plane, new Float32Array(m.out, f * len * 4, len));
          post({ op: 'frame', f });
        }
      } finally {
        maker.dispose();
      }
      post({ op: 'done' });
      return;
    }
    case 'alignStart': {
      const len = 2 * (m.w / 2 + 1) * m.h;
      const spectra = Array.from(
        { length: m.frames },
        (_, f) => new Float32Array(m.spectra, f * len * 4, len),
      );
      const fft = await RealFft2d.create(m.w, m.h);
      align = {
        fft,
        share: new ColumnShare(
          spectra,
          fft,
          m.k0,
          m.k1,
          m.radius,
          new Float32Array(m.band),
          new Float64Array(m.sums),
          m.initial,
        ),
      };
      post({ op: 'done' });
      return;
    }
    case 'step': {
      if (!align) throw new Error('step before alignStart');
      align.share.step(m.f, m.x, m.y, m.move, m.local);
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
      let acc: Float32Array;
      try {
        const next = new Int32Array(m.next);
        for (let f = Atomics.add(next, 0, 1); f < m.frames; f = Atomics.add(next, 0, 1)) {
          plane = await s.readPlane(f, plane);
          summer.add(plane, f, m.shifts[f]!);
          post({ op: 'frame', f });
        }
        acc = summer.sum();
      } finally {
        summer.dispose();
      }
      post({ op: 'done', acc }, [acc.buffer as ArrayBuffer]);
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
