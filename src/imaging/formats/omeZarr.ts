/**
 * OME-Zarr images: OME-NGFF 0.4 metadata on Zarr v2 (".zgroup", ".zattrs", per-level ".zarray"),
 * chunks keyed "level/z/y/x" (dimension_separator "/"). Written by jobd; read back through zarrita.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import FileSystemStore from '@zarrita/storage/fs';
import * as zarr from 'zarrita';
import type { PixelSize, PixelType, PlaneArray } from '../types.js';
import { ZARR_DTYPE, type ZarrCompressor } from './zarrChunks.js';

export interface OmeZarrLevel {
  path: string;
  /** [z, y, x] */
  shape: [number, number, number];
}

export interface OmeZarrImageSpec {
  name: string;
  dtype: PixelType;
  /** [z, y, x] */
  chunks: [number, number, number];
  compressor: ZarrCompressor;
  levels: OmeZarrLevel[];
  pixelSize: PixelSize | undefined;
  /** Name and type of the first axis: z (space) for stacks, "scan" (custom) for 4D datasets. */
  firstAxis: { name: string; type: string };
  /** Free-form provenance stored beside multiscales (source file, scan shape...). */
  extra?: Record<string, unknown>;
}

export function zarrayOf(spec: OmeZarrImageSpec, level: OmeZarrLevel): Record<string, unknown> {
  return {
    zarr_format: 2,
    shape: level.shape,
    chunks: spec.chunks,
    dtype: ZARR_DTYPE[spec.dtype],
    compressor: spec.compressor,
    fill_value: 0,
    order: 'C',
    filters: null,
    dimension_separator: '/',
  };
}

/** The group's .zattrs: one multiscales entry with axes and per-level scale + translation. */
export function multiscalesOf(spec: OmeZarrImageSpec): Record<string, unknown> {
  const p = spec.pixelSize;
  const unit = p?.unit;
  const space = (name: string) => ({ name, type: 'space', ...(unit ? { unit } : {}) });
  const first = spec.firstAxis.type === 'space' ? space(spec.firstAxis.name) : spec.firstAxis;
  const sz = spec.firstAxis.type === 'space' ? (p?.z ?? 1) : 1;
  const sy = p?.y ?? 1;
  const sx = p?.x ?? 1;
  const full = spec.levels[0]!.shape;
  const datasets = spec.levels.map((l) => {
    // In-plane 2× means: a level-L pixel covers f = full/level source pixels; its centre moves by (f - 1) / 2.
    const fy = full[1] / l.shape[1];
    const fx = full[2] / l.shape[2];
    const ky = 2 ** Math.round(Math.log2(fy));
    const kx = 2 ** Math.round(Math.log2(fx));
    return {
      path: l.path,
      coordinateTransformations: [
        { type: 'scale', scale: [sz, sy * ky, sx * kx] },
        { type: 'translation', translation: [0, (sy * (ky - 1)) / 2, (sx * (kx - 1)) / 2] },
      ],
    };
  });
  return {
    multiscales: [
      {
        version: '0.4',
        name: spec.name,
        axes: [first, space('y'), space('x')],
        datasets,
        type: 'mean',
        metadata: { description: '2x2 in-plane mean per level; the first axis is not downsampled' },
      },
    ],
    ...(spec.extra ? { jobd: spec.extra } : {}),
  };
}

export async function writeOmeZarrMetadata(root: string, spec: OmeZarrImageSpec): Promise<void> {
  const { mkdir } = await import('node:fs/promises');
  await mkdir(root, { recursive: true });
  await writeFile(join(root, '.zgroup'), JSON.stringify({ zarr_format: 2 }));
  for (const level of spec.levels) {
    await mkdir(join(root, level.path), { recursive: true });
    await writeFile(join(root, level.path, '.zarray'), JSON.stringify(zarrayOf(spec, level), null, 1));
  }
  await writeFile(join(root, '.zattrs'), JSON.stringify(multiscalesOf(spec), null, 1));
}

export function chunkKey(level: string, z: number, y: number, x: number): string {
  return `${level}/${z}/${y}/${x}`;
}

/** Reads OME-Zarr images (any Zarr v2 codec zarrita knows) one plane at a time. */
export class OmeZarrReader {
  private constructor(
    readonly root: string,
    readonly attrs: Record<string, unknown>,
    private readonly arrays: zarr.Array<zarr.DataType, FileSystemStore>[],
  ) {}

  static async open(root: string): Promise<OmeZarrReader> {
    const attrs = JSON.parse(await readFile(join(root, '.zattrs'), 'utf8')) as Record<string, unknown>;
    const ms = (attrs.multiscales as { datasets: { path: string }[] }[] | undefined)?.[0];
    if (!ms) throw new Error(`${root}: .zattrs has no multiscales`);
    const store = new FileSystemStore(root);
    const arrays = [];
    for (const d of ms.datasets) {
      arrays.push(await zarr.open.v2(zarr.root(store).resolve(d.path), { kind: 'array' }));
    }
    return new OmeZarrReader(root, attrs, arrays);
  }

  get levels(): number {
    return this.arrays.length;
  }

  shape(level: number): number[] {
    return this.arrays[level]!.shape;
  }

  async readPlane(level: number, z: number): Promise<PlaneArray> {
    const a = this.arrays[level]!;
    const r = await zarr.get(a, [z, null, null]);
    return r.data as PlaneArray;
  }
}
