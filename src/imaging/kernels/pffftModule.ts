import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { TRANSPOSE_WASM_BASE64 } from './transposeWasm.js';

/** The functions jobd calls in PFFFT's WebAssembly module (pointers are byte offsets into its heap). */
export interface PffftModule {
  HEAPF32: Float32Array;
  HEAPU32: Uint32Array;
  HEAPF64: Float64Array;
  _pffft_new_setup(n: number, kind: number): number;
  _pffft_destroy_setup(setup: number): void;
  _pffft_transform_ordered(
    setup: number,
    input: number,
    output: number,
    work: number,
    direction: number,
  ): void;
  _pffft_aligned_malloc(bytes: number): number;
  _pffft_aligned_free(ptr: number): void;
  _pffft_simd_size(): number;
  /**
   * dst[c·dstStride + 8r] = src[r·srcStride + 8c] for 8-byte elements, r < nr, c < nc (byte
   * offsets and strides): WebAssembly SIMD on the module's own memory for even nr and nc, else JS.
   */
  transpose64(src: number, srcStride: number, dst: number, dstStride: number, nr: number, nc: number): void;
  /**
   * transpose.wat's shifted accumulation (acc += spec · x[kx] · y[ky], weighted by
   * weights[bins[i]]), WebAssembly SIMD on the module's memory; undefined without SIMD.
   */
  shiftKernels?: ShiftKernels;
}

export interface ShiftKernels {
  addShifted(spec: number, acc: number, x: number, y: number, wc: number, h: number): void;
  addShiftedWeighted(
    spec: number,
    acc: number,
    x: number,
    y: number,
    wc: number,
    h: number,
    bins: number,
    weights: number,
  ): void;
}

export const PFFFT_REAL = 0;
export const PFFFT_COMPLEX = 1;
export const PFFFT_FORWARD = 0;
export const PFFFT_BACKWARD = 1;

let loaded: Promise<PffftModule> | undefined;

type Factory = (
  moduleArg?: Record<string, unknown>,
) => Promise<Omit<PffftModule, 'transpose64' | 'shiftKernels'>>;
// The WebAssembly global as jobd uses it (the project's lib settings do not declare it).
interface WasmInstance {
  exports: Record<string, unknown>;
}
interface WasmApi {
  instantiate(bytes: Uint8Array, imports: object): Promise<{ instance: WasmInstance }>;
  Memory: abstract new (...args: never[]) => object;
}
const Wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
type Receive = (instance: WasmInstance) => void;

/**
 * Instantiates PFFFT through Emscripten's documented `instantiateWasm` hook, so that jobd holds its
 * WebAssembly.Memory and can link its own small kernels (transpose.wat) to the same memory.
 */
async function instantiate(factory: Factory, specifier: string): Promise<PffftModule> {
  const wasmPath = join(dirname(createRequire(import.meta.url).resolve(specifier)), 'pffft.wasm');
  const bytes = await readFile(wasmPath);
  let memory: object | undefined;
  const m = (await factory({
    instantiateWasm(imports: object, receive: Receive) {
      Wasm.instantiate(bytes, imports).then(
        ({ instance }) => {
          const mem = Object.values(instance.exports).find((e) => e instanceof Wasm.Memory);
          memory = mem as object | undefined;
          receive(instance);
        },
        (err: unknown) => {
          throw err;
        },
      );
      return {};
    },
  })) as PffftModule;
  const kernels = await simdKernels(memory);
  m.transpose64 = transposeKernel(m, kernels);
  if (kernels)
    m.shiftKernels = {
      addShifted: kernels.exports.addShifted as ShiftKernels['addShifted'],
      addShiftedWeighted: kernels.exports.addShiftedWeighted as ShiftKernels['addShiftedWeighted'],
    };
  return m;
}

/** transpose.wat linked to PFFFT's memory, or undefined where WebAssembly SIMD is missing. */
async function simdKernels(memory: object | undefined): Promise<WasmInstance | undefined> {
  if (!memory) return undefined;
  try {
    const { instance } = await Wasm.instantiate(Buffer.from(TRANSPOSE_WASM_BASE64, 'base64'), {
      env: { memory },
    });
    return instance;
  } catch {
    return undefined; // no WebAssembly SIMD here: the JS paths do the same
  }
}

function transposeKernel(
  m: Omit<PffftModule, 'transpose64'>,
  instance: WasmInstance | undefined,
): PffftModule['transpose64'] {
  const js: PffftModule['transpose64'] = (src, ss, dst, ds, nr, nc) => {
    const f64 = m.HEAPF64;
    for (let r = 0; r < nr; r++) {
      const s = (src + r * ss) >> 3;
      const d = (dst >> 3) + r;
      for (let c = 0; c < nc; c++) f64[d + c * (ds >> 3)] = f64[s + c]!;
    }
  };
  if (!instance) return js;
  const rowsOuter = instance.exports.rowsOuter as PffftModule['transpose64'];
  const columnsOuter = instance.exports.columnsOuter as PffftModule['transpose64'];
  const kernel: PffftModule['transpose64'] = (src, ss, dst, ds, nr, nc) =>
    (nr < nc ? columnsOuter : rowsOuter)(src, ss, dst, ds, nr, nc);
  return (src, ss, dst, ds, nr, nc) => {
    if ((nr | nc) & 1) js(src, ss, dst, ds, nr, nc);
    else kernel(src, ss, dst, ds, nr, nc);
  };
}

/** One module per process; the SIMD build when WebAssembly SIMD is there (Node 20 has it). */
export function loadPffft(): Promise<PffftModule> {
  loaded ??= (async () => {
    try {
      const simd = await import('@echogarden/pffft-wasm/simd');
      return await instantiate(simd.default as Factory, '@echogarden/pffft-wasm/simd');
    } catch {
      const plain = await import('@echogarden/pffft-wasm');
      return await instantiate(plain.default as Factory, '@echogarden/pffft-wasm');
    }
  })();
  return loaded;
}
