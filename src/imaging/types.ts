/** Pixel types a stack can hold once read (float16 files are widened to float32). */
export type PixelType = 'int8' | 'uint8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'float32' | 'float64';

export type PlaneArray =
  Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array | Float32Array | Float64Array;

/** OME-NGFF space units jobd produces. */
export type SpaceUnit = 'angstrom' | 'nanometer' | 'micrometer' | 'millimeter';

export interface PixelSize {
  x: number;
  y: number;
  z: number;
  unit: SpaceUnit;
}

/**
 * A stack of 2D planes read one at a time: MRC sections, TIFF pages, or the frames of a 4D dataset
 * (one per scan position). Nothing reads the whole stack at once.
 */
export interface ImageStack {
  readonly path: string;
  readonly width: number;
  readonly height: number;
  readonly depth: number;
  readonly dtype: PixelType;
  /** From the file's header when it has one; undefined when the file says nothing. */
  readonly pixelSize: PixelSize | undefined;
  /** For 4D datasets: the scan grid [ny, nx] that the planes were flattened from (y-major). */
  readonly scanShape?: [number, number];
  /**
   * Plane `index`. `reuse`, a plane this stack returned before that the caller no longer needs, may
   * be overwritten and returned (no fresh allocation per plane); a stack may ignore it.
   */
  readPlane(index: number, reuse?: PlaneArray): Promise<PlaneArray>;
  close(): Promise<void>;
}

export const BYTES_PER_PIXEL: Record<PixelType, number> = {
  int8: 1,
  uint8: 1,
  int16: 2,
  uint16: 2,
  int32: 4,
  uint32: 4,
  float32: 4,
  float64: 8,
};

export function allocPlane(dtype: PixelType, n: number): PlaneArray {
  switch (dtype) {
    case 'int8':
      return new Int8Array(n);
    case 'uint8':
      return new Uint8Array(n);
    case 'int16':
      return new Int16Array(n);
    case 'uint16':
      return new Uint16Array(n);
    case 'int32':
      return new Int32Array(n);
    case 'uint32':
      return new Uint32Array(n);
    case 'float32':
      return new Float32Array(n);
    case 'float64':
      return new Float64Array(n);
  }
}

export function toFloat32(plane: PlaneArray): Float32Array {
  return plane instanceof Float32Array ? plane : Float32Array.from(plane);
}
