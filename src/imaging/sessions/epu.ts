/**
 * EPU (Thermo Fisher) sessions: each exposure is written as `FoilHole_<hole>_Data_<...>.xml` beside its
 * image and, with dose fractionation, its movie `<same stem>_fractions.tiff` (or `.mrc`; `.eer` is not
 * read by jobd's kernels). The XML is a .NET DataContract serialisation of a `MicroscopeImage`:
 *
 *   microscopeData/gun/AccelerationVoltage           V
 *   microscopeData/optics/Defocus                    m (the applied defocus, negative underfocus)
 *   microscopeData/stage/Position/{X,Y,Z}            m
 *   microscopeData/camera/ExposureTime               s
 *   microscopeData/acquisition/acquisitionDateTime   ISO 8601
 *   SpatialScale/pixelSize/x/numericValue            m
 *   CustomData: KeyValueOfstringanyType entries      AppliedDefocus (m), Dose (e⁻/m²), NumberOffractions
 *   camera/CameraSpecificInput: FractionationSettings/NumberOffractions
 *
 * Namespace prefixes are dropped when parsing, as EPU's varies between versions.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { basename, dirname, join } from 'node:path';
import { ImageFormatError } from '../errors.js';
import { exposureId, type Exposure } from './types.js';

/** The movie beside an exposure's XML, by EPU's naming, in order of preference. */
export const EPU_MOVIE_SUFFIXES = ['_fractions.tiff', '_fractions.tif', '_fractions.mrc', '_Fractions.mrc'];
/** EPU's own file for an exposure that has no movie: the integrated image beside the XML. */
const EPU_IMAGE_SUFFIXES = ['.mrc', '.tiff', '.tif'];

/** `FoilHole_<n>_Data_<...>.xml`: an exposure (GridSquare_*.xml and atlas XML are not). */
export function isEpuExposureXml(name: string): boolean {
  return /^FoilHole_\d+_Data_.+\.xml$/i.test(name);
}

const parser = new XMLParser({
  removeNSPrefix: true,
  ignoreAttributes: true,
  parseTagValue: false,
  trimValues: true,
  isArray: (name) => name === 'KeyValueOfstringanyType',
});

type Node = Record<string, unknown>;

function at(root: unknown, path: string[]): unknown {
  let cur: unknown = root;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Node)[p];
  }
  return cur;
}

/** Values of the DataContract dictionary at `node` (KeyValueOfstringanyType entries). */
function dictionary(node: unknown): Map<string, unknown> {
  const out = new Map<string, unknown>();
  const entries = at(node, ['KeyValueOfstringanyType']);
  if (Array.isArray(entries))
    for (const e of entries) {
      const key = at(e, ['Key']);
      if (typeof key === 'string') out.set(key, at(e, ['Value']));
    }
  return out;
}

function num(v: unknown): number | null {
  if (typeof v !== 'string' || v.trim() === '') return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

/**
 * The metadata of one exposure from its XML text. `movie` is the file the workflow will read (found by
 * the caller). Throws ImageFormatError naming the file and what is wrong.
 */
export function parseEpuXml(file: string, text: string, movie: string): Exposure {
  const valid = XMLValidator.validate(text);
  if (valid !== true)
    throw new ImageFormatError(
      file,
      `not well-formed XML (line ${valid.err.line}, column ${valid.err.col}: ${valid.err.msg})`,
    );
  const doc = parser.parse(text) as Node;
  const image = doc.MicroscopeImage;
  if (image === undefined || image === null || typeof image !== 'object')
    throw new ImageFormatError(file, 'is not an EPU exposure: its root element is not MicroscopeImage');
  const need = (path: string[], what: string): number => {
    const v = num(at(image, path));
    if (v === null)
      throw new ImageFormatError(
        file,
        `has no ${what} (${path.join('/')}: ${JSON.stringify(at(image, path) ?? null)})`,
      );
    return v;
  };
  const pixelM = need(['SpatialScale', 'pixelSize', 'x', 'numericValue'], 'pixel size');
  if (!(pixelM > 0) || pixelM > 1e-6)
    throw new ImageFormatError(file, `pixel size ${pixelM} m is not a plausible pixel size (0 to 1 µm)`);
  const custom = dictionary(at(image, ['CustomData']));
  const cameraInput = dictionary(at(image, ['microscopeData', 'camera', 'CameraSpecificInput']));
  const fractions =
    num(at(cameraInput.get('FractionationSettings'), ['NumberOffractions'])) ??
    num(custom.get('NumberOffractions'));
  const defocusM =
    num(custom.get('AppliedDefocus')) ?? num(at(image, ['microscopeData', 'optics', 'Defocus']));
  const doseM2 = num(custom.get('Dose'));
  const volts = num(at(image, ['microscopeData', 'gun', 'AccelerationVoltage']));
  const pos = ['microscopeData', 'stage', 'Position'];
  const when = at(image, ['microscopeData', 'acquisition', 'acquisitionDateTime']);
  const stem = basename(file).replace(/\.xml$/i, '');
  return {
    id: exposureId(stem),
    movie,
    metadataFile: file,
    pixelSize: pixelM * 1e10,
    dose: doseM2 === null ? null : doseM2 * 1e-20,
    targetDefocus: defocusM === null ? null : defocusM * 1e6,
    stage: {
      x: need([...pos, 'X'], 'stage X') * 1e6,
      y: need([...pos, 'Y'], 'stage Y') * 1e6,
      z: ((z) => (z === null ? null : z * 1e6))(num(at(image, [...pos, 'Z']))),
    },
    exposureTime: num(at(image, ['microscopeData', 'camera', 'ExposureTime'])),
    frames: fractions !== null && fractions >= 1 ? Math.round(fractions) : 0,
    voltage: volts === null ? null : volts / 1000,
    acquiredAt: typeof when === 'string' && when !== '' ? when : null,
  };
}

/** The movie EPU wrote beside `xml`, among `names` (the folder's files); null when none is there yet. */
export function epuMovieFor(xml: string, names: ReadonlySet<string>): string | null {
  const stem = basename(xml).replace(/\.xml$/i, '');
  for (const suffix of [...EPU_MOVIE_SUFFIXES, '_fractions.eer', '_Fractions.eer']) {
    if (names.has(stem + suffix)) return join(dirname(xml), stem + suffix);
  }
  for (const ext of EPU_IMAGE_SUFFIXES) if (names.has(stem + ext)) return join(dirname(xml), stem + ext);
  return null;
}
