// Assembles src/imaging/kernels/transpose.wat into transposeWasm.ts (the bytes, base64) with wabt.
// Run after editing the .wat: node scripts/buildTransposeWasm.mjs. tests/imaging/fft.test.ts checks
// that the committed bytes are what the .wat assembles to.
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import wabtInit from 'wabt';

const watPath = fileURLToPath(new URL('../src/imaging/kernels/transpose.wat', import.meta.url));
const outPath = fileURLToPath(new URL('../src/imaging/kernels/transposeWasm.ts', import.meta.url));

export async function assembleTranspose() {
  const wabt = await wabtInit();
  const mod = wabt.parseWat('transpose.wat', await readFile(watPath, 'utf8'), { simd: true });
  try {
    mod.validate();
    return Buffer.from(mod.toBinary({}).buffer).toString('base64');
  } finally {
    mod.destroy();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const b64 = await assembleTranspose();
  await writeFile(
    outPath,
    `/** transpose.wat assembled by scripts/buildTransposeWasm.mjs: do not edit by hand. */\nexport const TRANSPOSE_WASM_BASE64 =\n  '${b64}';\n`,
  );
}
