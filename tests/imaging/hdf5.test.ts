import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Hdf5Stack } from '../../src/imaging/formats/hdf5.js';
import { openStack } from '../../src/imaging/formats/openStack.js';
import { findPython, runPython } from '../fixtures/imaging/python.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'jobd-h5-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('HDF5 4D-STEM', () => {
  it('refuses a file that is not HDF5, naming it', async () => {
    const path = join(dir, 'junk.h5');
    await writeFile(path, Buffer.alloc(4096, 7));
    await expect(Hdf5Stack.open(path)).rejects.toThrow(new RegExp(`^${path}: not a readable HDF5 file`));
  });

  const py = findPython(['h5py', 'numpy']);
  it.skipIf(!py)(
    'reads a chunked, gzip+shuffle compressed 4D dataset frame by frame, with its pixel size',
    async () => {
      const path = join(dir, 'stem.h5');
      runPython(
        py!,
        `import h5py, numpy as np, sys
a = (np.arange(3*4*20*16).reshape(3,4,20,16) % 1000).astype(np.uint16)
with h5py.File(sys.argv[1], 'w') as f:
    f.create_dataset('/small', data=np.zeros((2,2,2), np.uint8))
    d = f.create_dataset('/entry/data/frames', data=a, chunks=(1,1,20,16), compression='gzip', shuffle=True)
    d.attrs['pixel_size'] = [0.5, 0.25]
    d.attrs['pixel_size_units'] = 'nm'
`,
        [path],
      );
      const s = await openStack(path);
      try {
        expect([s.width, s.height, s.depth, s.dtype]).toEqual([16, 20, 12, 'uint16']);
        expect(s.scanShape).toEqual([3, 4]);
        expect((s as Hdf5Stack).datasetPath).toBe('/entry/data/frames');
        expect(s.pixelSize).toEqual({ x: 0.25, y: 0.5, z: 0.25, unit: 'nanometer' });
        // frame 7 = scan (1, 3)
        const f = await s.readPlane(7);
        const base = (1 * 4 + 3) * 320;
        expect(Array.from(f)).toEqual(Array.from({ length: 320 }, (_, i) => (base + i) % 1000));
      } finally {
        await s.close();
      }
    },
  );
});
