/** Session importers: EPU, SerialEM and Leginon metadata read into exposures, and their jobs. */
export { exposureId, type Exposure, type SessionFormat } from './types.js';
export { parseEpuXml, epuMovieFor, isEpuExposureXml } from './epu.js';
export { parseMdoc, mdocExposures, type Mdoc, type MdocSection } from './mdoc.js';
export { leginonExposures } from './leginon.js';
export { scanSession, type ScanOptions, type ScanResult } from './scan.js';
export { exposureJobs, exposureOfKey, STEPS, type ExposureJob, type Microscope } from './workflow.js';
