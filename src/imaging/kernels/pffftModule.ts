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
}

export const PFFFT_REAL = 0;
export const PFFFT_COMPLEX = 1;
export const PFFFT_FORWARD = 0;
export const PFFFT_BACKWARD = 1;

let loaded: Promise<PffftModule> | undefined;

/** One module per process; the SIMD build when WebAssembly SIMD is there (Node 20 has it). */
export function loadPffft(): Promise<PffftModule> {
  loaded ??= (async () => {
    try {
      const simd = await import('@echogarden/pffft-wasm/simd');
      return await simd.default();
    } catch {
      const plain = await import('@echogarden/pffft-wasm');
      return await plain.default();
    }
  })();
  return loaded;
}
