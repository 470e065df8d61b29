/** Types for the PFFFT WebAssembly build (an Emscripten module factory). */
declare module '@echogarden/pffft-wasm/simd' {
  import type { PffftModule } from './pffftModule.js';
  const factory: (moduleArg?: Record<string, unknown>) => Promise<Omit<PffftModule, 'transpose64'>>;
  export default factory;
}
declare module '@echogarden/pffft-wasm' {
  import type { PffftModule } from './pffftModule.js';
  const factory: (moduleArg?: Record<string, unknown>) => Promise<Omit<PffftModule, 'transpose64'>>;
  export default factory;
}
