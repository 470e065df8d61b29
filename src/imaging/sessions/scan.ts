/**
 * One pass over a session directory: which exposures are there, and which of them are complete. A file
 * the microscope may still be writing (its movie or metadata changed within settleMs, or its movie is
 * not there yet) waits for a later pass. A pass reads at most `limit` exposures' metadata, so a
 * directory of thousands costs a listing, not thousands of parses.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { ImageFormatError } from '../errors.js';
import { openStack } from '../formats/openStack.js';
import { epuMovieFor, isEpuExposureXml, parseEpuXml } from './epu.js';
import { leginonExposures } from './leginon.js';
import { mdocExposures, parseMdoc } from './mdoc.js';
import { exposureId, type Exposure, type SessionFormat } from './types.js';

export interface ScanOptions {
  format: SessionFormat | 'auto';
  /** The Leginon export (JSON or CSV), for format leginon. */
  leginonExport?: string;
  /** A file changed less than this long ago may still be being written. */
  settleMs: number;
  /** Epoch ms of the pass (injected, for tests). */
  now: number;
  /** Exposure ids already imported: skipped before their metadata is read where the name tells. */
  skip: ReadonlySet<string>;
  /** At most this many new exposures per pass. */
  limit: number;
}

export interface ScanResult {
  /** null when the directory holds nothing yet that tells (auto). */
  format: SessionFormat | null;
  ready: Exposure[];
  /** Exposures seen whose files are not complete yet. */
  waiting: string[];
  /** True when the limit cut the pass short. */
  more: boolean;
}

interface Entry {
  path: string;
  name: string;
  dir: string;
}

/** Files under `dir`, at most `depth` folders down (EPU nests Images-Disc1/GridSquare_n/Data). */
async function listFiles(dir: string, depth: number): Promise<Entry[]> {
  const out: Entry[] = [];
  const walk = async (d: string, left: number): Promise<void> => {
    const items = await readdir(d, { withFileTypes: true });
    for (const it of items) {
      if (it.isDirectory() && left > 0) await walk(join(d, it.name), left - 1);
      else if (it.isFile()) out.push({ path: join(d, it.name), name: it.name, dir: d });
    }
  };
  await walk(dir, depth);
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Last change of a file in epoch ms, or null when it does not exist. */
async function changedAt(path: string): Promise<number | null> {
  try {
    return (await stat(path)).mtimeMs;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

function detect(files: Entry[]): SessionFormat | null {
  if (files.some((f) => f.name.toLowerCase().endsWith('.mdoc'))) return 'serialem';
  if (files.some((f) => isEpuExposureXml(f.name))) return 'epu';
  return null;
}

/** EER is a Falcon event format the kernels do not read. */
function checkMovie(e: Exposure): void {
  if (/\.eer$/i.test(e.movie))
    throw new ImageFormatError(
      e.movie,
      'EER movies are not read by the motion correction kernel; have the microscope write TIFF or MRC fractions',
    );
}

/** Frame count from the movie's own header, when the metadata did not say. */
async function withFrames(e: Exposure): Promise<Exposure> {
  if (e.frames >= 1) return e;
  const stack = await openStack(e.movie);
  try {
    return { ...e, frames: stack.depth };
  } finally {
    await stack.close();
  }
}

export async function scanSession(dir: string, o: ScanOptions): Promise<ScanResult> {
  const settled = (t: number | null) => t !== null && t <= o.now - o.settleMs;
  const ready: Exposure[] = [];
  const waiting: string[] = [];
  let more = false;
  const take = async (e: Exposure, metaChanged: number | null): Promise<boolean> => {
    if (o.skip.has(e.id) || ready.some((r) => r.id === e.id)) return true;
    checkMovie(e);
    if (!settled(metaChanged) || !settled(await changedAt(e.movie))) {
      waiting.push(e.id);
      return true;
    }
    if (ready.length >= o.limit) {
      more = true;
      return false;
    }
    ready.push(await withFrames(e));
    return true;
  };

  if (o.format === 'leginon') {
    if (!o.leginonExport)
      throw new ImageFormatError(dir, 'format leginon needs the export file (leginon_export)');
    const file = o.leginonExport;
    const changed = await changedAt(file);
    if (changed === null) throw new ImageFormatError(file, 'does not exist');
    for (const e of leginonExposures(file, await readFile(file, 'utf8')))
      if (!(await take(e, changed))) break;
    return { format: 'leginon', ready, waiting, more };
  }

  const files = await listFiles(dir, 4);
  const format = o.format === 'auto' ? detect(files) : o.format;
  if (format === 'epu') {
    const byDir = new Map<string, Set<string>>();
    for (const f of files) byDir.set(f.dir, (byDir.get(f.dir) ?? new Set()).add(f.name));
    for (const f of files) {
      if (!isEpuExposureXml(f.name)) continue;
      if (o.skip.has(exposureId(f.name.replace(/\.xml$/i, '')))) continue;
      const changed = await changedAt(f.path);
      if (!settled(changed)) {
        waiting.push(f.name);
        continue;
      }
      const movie = epuMovieFor(f.path, byDir.get(f.dir)!);
      if (movie === null) {
        waiting.push(f.name);
        continue;
      }
      if (!(await take(parseEpuXml(f.path, await readFile(f.path, 'utf8'), movie), changed))) break;
    }
  } else if (format === 'serialem') {
    for (const f of files) {
      if (!f.name.toLowerCase().endsWith('.mdoc')) continue;
      const changed = await changedAt(f.path);
      // SerialEM writes a frame's mdoc when the frames are saved; one still open may be incomplete.
      if (!settled(changed)) {
        waiting.push(basename(f.name));
        continue;
      }
      let stop = false;
      for (const e of mdocExposures(f.path, parseMdoc(f.path, await readFile(f.path, 'utf8'))))
        if (!(await take(e, changed))) {
          stop = true;
          break;
        }
      if (stop) break;
    }
  }
  return { format, ready, waiting, more };
}
