/**
 * Leginon keeps its metadata in MySQL (the leginondb database), not in files beside the images, so
 * jobd reads an export of its image table: a JSON array of rows (or `{ "images": [...] }`) or a CSV
 * file with a header row. One row per exposure, Leginon's units:
 *
 *   filename        the image's name (AcquisitionImageData.filename), `.mrc` added when it has no extension
 *   frames          optional: the movie's file name or path (else `filename` is the movie)
 *   pixelsize       m per pixel (PixelSizeCalibrationData.pixelsize × binning)
 *   dose            e⁻/m² (PresetData.dose), optional
 *   defocus         m (ScopeEMData.defocus), optional
 *   stage_x, stage_y, stage_z   m (ScopeEMData.stage position); stage_z optional
 *   exposure_time   ms (CameraEMData.exposure time), optional
 *   nframes         CameraEMData.nframes, optional
 *   high_tension    V (ScopeEMData.high tension), optional
 *   timestamp       optional
 *
 * Relative paths are taken from the export's folder. docs/imaging.md gives a query that writes it.
 */
import { parse as parseCsv } from 'csv-parse/sync';
import { dirname, extname, isAbsolute, join } from 'node:path';
import { ImageFormatError } from '../errors.js';
import { exposureId, type Exposure } from './types.js';

type Row = Record<string, unknown>;

function rowsOf(file: string, text: string): Row[] {
  if (/\.json$/i.test(file)) {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw new ImageFormatError(file, `is not valid JSON: ${(err as Error).message}`);
    }
    const rows = Array.isArray(doc) ? doc : (doc as { images?: unknown } | null)?.images;
    if (!Array.isArray(rows) || rows.some((r) => r === null || typeof r !== 'object' || Array.isArray(r)))
      throw new ImageFormatError(file, 'must hold an array of row objects, or { "images": [ ... ] }');
    return rows as Row[];
  }
  try {
    return parseCsv(text, { columns: true, skip_empty_lines: true, trim: true }) as Row[];
  } catch (err) {
    throw new ImageFormatError(file, `is not valid CSV: ${(err as Error).message}`);
  }
}

export function leginonExposures(file: string, text: string): Exposure[] {
  const base = dirname(file);
  const rows = rowsOf(file, text);
  if (rows.length === 0) throw new ImageFormatError(file, 'holds no rows');
  const seen = new Set<string>();
  return rows.map((row, i) => {
    const where = `row ${i + 1}`;
    const value = (key: string, required: boolean): number | null => {
      const v = row[key];
      if (v === undefined || v === null || v === '') {
        if (required) throw new ImageFormatError(file, `${where}: no ${key}`);
        return null;
      }
      const n = typeof v === 'number' ? v : Number(v);
      if (!Number.isFinite(n))
        throw new ImageFormatError(file, `${where}: ${key} = ${JSON.stringify(v)} is not a number`);
      return n;
    };
    const name = row.filename;
    if (typeof name !== 'string' || name.trim() === '')
      throw new ImageFormatError(file, `${where}: no filename`);
    const frames = typeof row.frames === 'string' && row.frames.trim() !== '' ? row.frames.trim() : null;
    const moviePath = frames ?? (extname(name) ? name : `${name}.mrc`);
    const pixelM = value('pixelsize', true)!;
    if (!(pixelM > 0) || pixelM > 1e-6)
      throw new ImageFormatError(
        file,
        `${where}: pixelsize ${pixelM} is not in metres per pixel (0 to 1e-6)`,
      );
    const id = exposureId(name.replace(/\.(mrc|tiff?)$/i, ''));
    if (seen.has(id))
      throw new ImageFormatError(file, `${where}: filename ${JSON.stringify(name)} appears twice`);
    seen.add(id);
    const m2um = (v: number | null) => (v === null ? null : v * 1e6);
    const ms = value('exposure_time', false);
    const n = value('nframes', false);
    const ht = value('high_tension', false);
    const dose = value('dose', false);
    return {
      id,
      movie: isAbsolute(moviePath) ? moviePath : join(base, moviePath),
      metadataFile: file,
      pixelSize: pixelM * 1e10,
      dose: dose === null ? null : dose * 1e-20,
      targetDefocus: m2um(value('defocus', false)),
      stage: {
        x: m2um(value('stage_x', true))!,
        y: m2um(value('stage_y', true))!,
        z: m2um(value('stage_z', false)),
      },
      exposureTime: ms === null ? null : ms / 1000,
      frames: n !== null && n >= 1 ? Math.round(n) : 0,
      voltage: ht === null ? null : ht / 1000,
      acquiredAt: typeof row.timestamp === 'string' && row.timestamp !== '' ? row.timestamp : null,
    };
  });
}
