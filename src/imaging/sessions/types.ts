/**
 * One exposure of a microscope session, as the importers read it from EPU XML, SerialEM .mdoc files or
 * a Leginon export. Units are fixed here whatever the source wrote, so the workflow built from an
 * exposure does not depend on where it came from.
 */
export type SessionFormat = 'epu' | 'serialem' | 'leginon';

export interface Exposure {
  /** Names the exposure within its session: letters, digits and . _ - only (a job key and a folder). */
  id: string;
  /** The movie (frames) or the image, absolute. */
  movie: string;
  /** The file its metadata came from, absolute. */
  metadataFile: string;
  /** Å per pixel. */
  pixelSize: number;
  /** Total dose, e⁻/Å²; null when the source does not say. */
  dose: number | null;
  /** Target (nominal) defocus, µm, negative for underfocus (SerialEM's convention). */
  targetDefocus: number | null;
  /** Stage position, µm. */
  stage: { x: number; y: number; z: number | null };
  /** Seconds. */
  exposureTime: number | null;
  /** Frames in the movie (1 for a single image). */
  frames: number;
  /** Acceleration voltage, kV; null when the source does not say. */
  voltage: number | null;
  /** When it was taken, ISO 8601, when the source says. */
  acquiredAt: string | null;
}

/** An id safe as a workflow key and a folder name, made from a file's stem. */
export function exposureId(stem: string): string {
  const id = stem.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._-]+/, '');
  return id.slice(0, 160) || 'exposure';
}
