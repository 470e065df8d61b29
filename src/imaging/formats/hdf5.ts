/**
 * 3D and 4D datasets in HDF5 files (4D-STEM: scan y, scan x, detector y, detector x), read one
 * frame at a time through h5wasm (HDF5 compiled to WebAssembly, reading the file in place).
 * A 4D dataset is presented as a stack of frames, one per scan position, y-major.
 */
import { open } from 'node:fs/promises';
import h5wasm, { type Dataset, type Group } from 'h5wasm/node';
import { ImageFormatError } from '../errors.js';
import type { ImageStack, PixelSize, PixelType, PlaneArray, SpaceUnit } from '../types.js';

const DTYPES: Record<string, PixelType> = {
  b: 'int8',
  B: 'uint8',
  h: 'int16',
  H: 'uint16',
  i: 'int32',
  I: 'uint32',
  f: 'float32',
  d: 'float64',
};

const UNITS: Record<string, SpaceUnit> = {
  A: 'angstrom',
  Å: 'angstrom',
  angstrom: 'angstrom',
  nm: 'nanometer',
  nanometer: 'nanometer',
  um: 'micrometer',
  µm: 'micrometer',
  micrometer: 'micrometer',
  mm: 'millimeter',
};

function findDatasets(g: Group, prefix: string, out: { path: string; size: number }[]): void {
  for (const key of g.keys()) {
    const child = g.get(key);
    const path = `${prefix}/${key}`;
    if (child instanceof h5wasm.Group) findDatasets(child, path, out);
    else if (child instanceof h5wasm.Dataset) {
      const shape = child.shape;
      if (shape && (shape.length === 3 || shape.length === 4))
        out.push({ path, size: shape.reduce((a, b) => a * b, 1) });
    }
  }
}

function numberAttr(ds: Dataset, name: string): number[] | undefined {
  const a = ds.attrs[name];
  if (!a) return undefined;
  const v = a.json_value;
  const arr = Array.isArray(v) ? v.flat() : [v];
  const nums = arr.map(Number).filter((x) => Number.isFinite(x) && x > 0);
  return nums.length ? nums : undefined;
}

function stringAttr(ds: Dataset, name: string): string | undefined {
  const v = ds.attrs[name]?.json_value;
  return typeof v === 'string' ? v : undefined;
}

/** Pixel size of the frames: attribute `pixel_size` (one value or [y, x]) with `pixel_size_units` or `units`. */
function pixelSizeOf(ds: Dataset): PixelSize | undefined {
  const p = numberAttr(ds, 'pixel_size');
  const unitName = stringAttr(ds, 'pixel_size_units') ?? stringAttr(ds, 'units');
  const unit = unitName ? UNITS[unitName] : undefined;
  if (!p || !unit) return undefined;
  const y = p[0]!;
  const x = p[1] ?? y;
  return { x, y, z: x, unit };
}

const SIGNATURE = Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);

/** The HDF5 signature sits at byte 0, or after a user block at 512, 1024, 2048, ... */
async function checkSignature(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const buf = Buffer.alloc(8);
    for (let at = 0; at + 8 <= size; at = at === 0 ? 512 : at * 2) {
      await fh.read(buf, 0, 8, at);
      if (buf.equals(SIGNATURE)) return;
      if (at >= 1 << 20) break;
    }
  } finally {
    await fh.close();
  }
  throw new ImageFormatError(path, 'not a readable HDF5 file (no HDF5 signature)');
}

export interface Hdf5OpenOptions {
  /** Path of the dataset inside the file; by default the largest 3D or 4D dataset. */
  dataset?: string;
}

export class Hdf5Stack implements ImageStack {
  readonly width: number;
  readonly height: number;
  readonly depth: number;
  readonly scanShape?: [number, number];
  private constructor(
    readonly path: string,
    readonly datasetPath: string,
    private readonly file: InstanceType<typeof h5wasm.File>,
    private readonly ds: Dataset,
    readonly dtype: PixelType,
    readonly pixelSize: PixelSize | undefined,
  ) {
    const shape = ds.shape!;
    this.height = shape[shape.length - 2]!;
    this.width = shape[shape.length - 1]!;
    if (shape.length === 4) {
      this.scanShape = [shape[0]!, shape[1]!];
      this.depth = shape[0]! * shape[1]!;
    } else {
      this.depth = shape[0]!;
    }
  }

  static async open(path: string, opts: Hdf5OpenOptions = {}): Promise<Hdf5Stack> {
    await checkSignature(path);
    await h5wasm.ready;
    let file: InstanceType<typeof h5wasm.File>;
    try {
      file = new h5wasm.File(path, 'r');
    } catch (err) {
      throw new ImageFormatError(
        path,
        `not a readable HDF5 file (${String((err as Error)?.message ?? err)})`,
        { cause: err },
      );
    }
    try {
      let dsPath = opts.dataset;
      if (!dsPath) {
        const found: { path: string; size: number }[] = [];
        findDatasets(file, '', found);
        found.sort((a, b) => b.size - a.size);
        if (!found.length) throw new ImageFormatError(path, 'has no 3D or 4D dataset');
        dsPath = found[0]!.path;
      }
      const ds = file.get(dsPath);
      if (!(ds instanceof h5wasm.Dataset)) throw new ImageFormatError(path, `has no dataset at ${dsPath}`);
      const shape = ds.shape;
      if (!shape || (shape.length !== 3 && shape.length !== 4)) {
        throw new ImageFormatError(
          path,
          `dataset ${dsPath} has shape [${shape?.join(', ')}]; jobd reads 3D or 4D datasets`,
        );
      }
      const dt = typeof ds.dtype === 'string' ? ds.dtype : '';
      const dtype = DTYPES[dt.replace(/^[<>=|]/, '')];
      if (!dtype)
        throw new ImageFormatError(
          path,
          `dataset ${dsPath} has type ${JSON.stringify(ds.dtype)}; jobd reads integer and float pixels`,
        );
      return new Hdf5Stack(path, dsPath, file, ds, dtype, pixelSizeOf(ds));
    } catch (err) {
      file.close();
      if (err instanceof ImageFormatError) throw err;
      throw new ImageFormatError(
        path,
        `cannot read the HDF5 structure (${String((err as Error)?.message ?? err)})`,
        {
          cause: err,
        },
      );
    }
  }

  async readPlane(index: number): Promise<PlaneArray> {
    if (!Number.isInteger(index) || index < 0 || index >= this.depth) {
      throw new RangeError(`${this.path}: frame ${index} is out of range 0..${this.depth - 1}`);
    }
    const ranges: [number, number][] = this.scanShape
      ? [
          [Math.floor(index / this.scanShape[1]), Math.floor(index / this.scanShape[1]) + 1],
          [index % this.scanShape[1], (index % this.scanShape[1]) + 1],
          [0, this.height],
          [0, this.width],
        ]
      : [
          [index, index + 1],
          [0, this.height],
          [0, this.width],
        ];
    let data: unknown;
    try {
      data = this.ds.slice(ranges);
    } catch (err) {
      const filters = this.ds.filters.map((f) => f.name).join(', ') || 'none';
      throw new ImageFormatError(
        this.path,
        `frame ${index} of ${this.datasetPath}: cannot read (filters: ${filters}; ${(err as Error).message})`,
        { cause: err },
      );
    }
    if (!ArrayBuffer.isView(data) || (data as PlaneArray).length !== this.width * this.height) {
      throw new ImageFormatError(
        this.path,
        `frame ${index} of ${this.datasetPath}: read returned no pixel data`,
      );
    }
    return data as PlaneArray;
  }

  async close(): Promise<void> {
    this.file.close();
  }
}
