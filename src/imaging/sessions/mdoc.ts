/**
 * SerialEM's .mdoc autodoc files: `key = value` lines, global ones first, then sections headed
 * `[ZValue = n]` (one per image of a stack), plus `[T = ...]` title lines. A frame-saving session writes
 * one `<movie>.mdoc` per movie beside it (one ZValue section, SubFramePath naming the movie, often as a
 * Windows path on the acquisition computer); a montage or tilt series writes one mdoc with many sections.
 *
 * Keys read (units as SerialEM writes them): PixelSpacing (Å), ExposureDose (e⁻/Å², the image's total),
 * TargetDefocus (µm, negative underfocus), StagePosition (µm, "x y"), StageZ (µm), ExposureTime (s),
 * NumSubFrames, SubFramePath, Voltage (kV, global or per section), DateTime.
 */
import { basename, dirname, join } from 'node:path';
import { ImageFormatError } from '../errors.js';
import { exposureId, type Exposure } from './types.js';

export interface MdocSection {
  /** The ZValue, or null for the global keys. */
  z: number | null;
  /** The section's first line number (1-based). */
  line: number;
  fields: Map<string, string>;
}

export interface Mdoc {
  global: Map<string, string>;
  sections: MdocSection[];
}

/** Parse an autodoc; throws ImageFormatError naming the file and the line of a malformed one. */
export function parseMdoc(file: string, text: string): Mdoc {
  const global = new Map<string, string>();
  const sections: MdocSection[] = [];
  let current: Map<string, string> = global;
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '') return;
    const header = /^\[\s*([A-Za-z]+)\s*=\s*(.*?)\s*\]$/.exec(line);
    if (header) {
      const [, kind, value] = header;
      if (kind === 'ZValue') {
        const z = Number(value);
        if (!Number.isInteger(z) || z < 0)
          throw new ImageFormatError(
            file,
            `line ${i + 1}: ZValue ${JSON.stringify(value)} is not a whole number ≥ 0`,
          );
        if (sections.some((s) => s.z === z))
          throw new ImageFormatError(file, `line ${i + 1}: ZValue ${z} appears twice`);
        current = new Map();
        sections.push({ z, line: i + 1, fields: current });
      } else {
        // [T = ...] titles and other named sections carry nothing an exposure needs.
        current = new Map();
      }
      return;
    }
    const eq = line.indexOf('=');
    if (eq <= 0)
      throw new ImageFormatError(
        file,
        `line ${i + 1}: ${JSON.stringify(line.slice(0, 80))} is neither "key = value" nor a [section] header`,
      );
    current.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  });
  return { global, sections };
}

function numbers(file: string, s: MdocSection, key: string, count: number): number[] | null {
  const v = s.fields.get(key);
  if (v === undefined || v === '') return null;
  const parts = v.split(/\s+/).map(Number);
  if (parts.length < count || parts.slice(0, count).some((n) => !Number.isFinite(n)))
    throw new ImageFormatError(
      file,
      `ZValue ${s.z} (line ${s.line}): ${key} = ${JSON.stringify(v)} is not ${count === 1 ? 'a number' : `${count} numbers`}`,
    );
  return parts.slice(0, count);
}

/** The basename of a path written on Windows or POSIX. */
function anyBasename(p: string): string {
  return p.split(/[\\/]/).pop() ?? p;
}

/**
 * The exposures of an mdoc: one per ZValue section. The movie is SubFramePath's file name beside the
 * mdoc, else (a per-movie mdoc) the mdoc's own name without `.mdoc`.
 */
export function mdocExposures(file: string, mdoc: Mdoc): Exposure[] {
  if (mdoc.sections.length === 0) throw new ImageFormatError(file, 'has no [ZValue = n] section');
  const dir = dirname(file);
  const own = basename(file).replace(/\.mdoc$/i, '');
  return mdoc.sections.map((s) => {
    const one = (key: string): number | null => numbers(file, s, key, 1)?.[0] ?? null;
    const pixel =
      one('PixelSpacing') ??
      (mdoc.global.has('PixelSpacing') ? Number(mdoc.global.get('PixelSpacing')) : null);
    if (pixel === null || !(pixel > 0))
      throw new ImageFormatError(file, `ZValue ${s.z} (line ${s.line}): no PixelSpacing > 0 (Å per pixel)`);
    const stage = numbers(file, s, 'StagePosition', 2);
    if (stage === null)
      throw new ImageFormatError(file, `ZValue ${s.z} (line ${s.line}): no StagePosition ("x y", µm)`);
    const sub = s.fields.get('SubFramePath');
    if (!sub && mdoc.sections.length > 1)
      throw new ImageFormatError(
        file,
        `ZValue ${s.z} (line ${s.line}): no SubFramePath; an mdoc with several sections must name each exposure's frames`,
      );
    const movieName = sub ? anyBasename(sub) : own;
    const frames = one('NumSubFrames');
    const voltage =
      one('Voltage') ?? (mdoc.global.has('Voltage') ? Number(mdoc.global.get('Voltage')) : null);
    const stem = movieName.replace(/\.(tiff?|mrcs?|eer)$/i, '');
    return {
      id: exposureId(mdoc.sections.length === 1 ? stem : `${stem}_z${s.z}`),
      movie: join(dir, movieName),
      metadataFile: file,
      pixelSize: pixel,
      dose: one('ExposureDose'),
      targetDefocus: one('TargetDefocus'),
      stage: { x: stage[0]!, y: stage[1]!, z: one('StageZ') },
      exposureTime: one('ExposureTime'),
      frames: frames !== null && frames >= 1 ? Math.round(frames) : 0,
      voltage: voltage !== null && Number.isFinite(voltage) ? voltage : null,
      acquiredAt: s.fields.get('DateTime') ?? null,
    };
  });
}
