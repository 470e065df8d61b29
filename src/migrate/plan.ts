/**
 * What the migration does with one legacy dataset, decided from its status alone (pure).
 *
 * - A status that a job type drives gets that job, or a chain of jobs where the status implies more
 *   than one step (sync → conversion, unzip → conversion): the later jobs wait on the earlier ones.
 * - `submitted` and `retrying` datasets start where their link says: a remote link syncs, a local zip
 *   is extracted, a local folder is converted.
 * - Error statuses (`sync error`, ...) are migrated as a fresh run of their step: the legacy service
 *   would have retried them too.
 * - Datasets caught `syncing`, `converting` or `uploading` are re-run from the start of their step.
 *   jobd cannot watch the legacy service's processes (which stop with it), and every step writes only
 *   into the dataset's own folders, so running it again is safe; legacy `monitor_existing` is not kept.
 * - `done` and `failed` are terminal: skipped. Unknown statuses are never guessed: skipped, untouched.
 */
import { legacyPriority } from '../jobs/data/typeDefaults.js';

export const LEGACY_JOB_TYPES = [
  'google_sync',
  'rsync_transfer',
  'file_extraction',
  'file_upload',
  'dataset_conversion',
  'data_compression',
  'backup_creation',
  'data_validation',
] as const;

/**
 * The legacy service's priority per type (1 high, 2 normal, 3 low). Migrated jobs get jobd's mapping
 * of it (3, 5, 7), as new jobs of these types do.
 */
export const LEGACY_PRIORITY: Record<string, 1 | 2 | 3> = {
  google_sync: 2,
  dataset_conversion: 1,
  file_upload: 2,
  file_extraction: 1,
  data_compression: 3,
  rsync_transfer: 2,
  backup_creation: 3,
  data_validation: 2,
};

type Step = 'google_sync' | 'file_extraction' | 'dataset_conversion' | 'file_upload' | 'data_compression';

const CHAINS: Record<string, Step[] | 'by-link'> = {
  submitted: 'by-link',
  retrying: 'by-link',
  'sync queued': ['google_sync', 'dataset_conversion'],
  syncing: ['google_sync', 'dataset_conversion'],
  'sync error': ['google_sync', 'dataset_conversion'],
  'conversion queued': ['dataset_conversion'],
  converting: ['dataset_conversion'],
  'conversion error': ['dataset_conversion'],
  'upload queued': ['file_upload'],
  uploading: ['file_upload'],
  'upload error': ['file_upload'],
  unzipping: ['file_extraction', 'dataset_conversion'],
  'unzip error': ['file_extraction', 'dataset_conversion'],
  zipping: ['data_compression'],
  'compression error': ['data_compression'],
};

export const TERMINAL_STATUSES = ['done', 'failed'];
export const KNOWN_STATUSES = [...Object.keys(CHAINS), ...TERMINAL_STATUSES];

export type SkipReason =
  | 'already has a jobd job'
  | 'terminal status'
  | 'unknown status'
  | 'missing uuid'
  | 'duplicate uuid'
  | 'missing required fields';

export interface PlannedJob {
  key: string;
  type: Step;
  params: Record<string, unknown>;
  priority: number;
  /** Keys of the earlier steps this one waits on. */
  dependsOn: string[];
}

export type Plan =
  | { action: 'migrate'; status: string; jobs: PlannedJob[] }
  | { action: 'skip'; status: string | null; reason: SkipReason; detail?: string };

export interface PlanSettings {
  inDataDir: string;
  outDataDir: string;
}

export interface LegacyDataset {
  _id: unknown;
  uuid?: unknown;
  status?: unknown;
  user?: unknown;
  sensor?: unknown;
  google_drive_link?: unknown;
  conversion_parameters?: unknown;
  [k: string]: unknown;
}

/** The dataset fields planDataset reads. */
export const PLAN_FIELDS = [
  'uuid',
  'status',
  'user',
  'sensor',
  'google_drive_link',
  'conversion_parameters',
] as const;

function str(v: unknown): string | null {
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : null;
}

function isLocal(link: string): boolean {
  return link.startsWith('file://');
}

function stepsByLink(link: string | null): Step[] | null {
  if (!link) return null;
  if (isLocal(link))
    return link.toLowerCase().endsWith('.zip')
      ? ['file_extraction', 'dataset_conversion']
      : ['dataset_conversion'];
  return ['google_sync', 'dataset_conversion'];
}

function conversionParams(v: unknown): Record<string, string> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return {};
  return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, String(x)]));
}

export function planDataset(d: LegacyDataset, s: PlanSettings): Plan {
  const status = typeof d.status === 'string' ? d.status : null;
  if (status === null || !(status in CHAINS || TERMINAL_STATUSES.includes(status))) {
    return {
      action: 'skip',
      status,
      reason: 'unknown status',
      detail: status === null ? 'no status field' : `"${status}"`,
    };
  }
  if (TERMINAL_STATUSES.includes(status)) return { action: 'skip', status, reason: 'terminal status' };
  const uuid = str(d.uuid);
  if (!uuid) return { action: 'skip', status, reason: 'missing uuid' };
  const link = str(d.google_drive_link);
  const chain = CHAINS[status]!;
  const steps = chain === 'by-link' ? stepsByLink(link) : chain;
  if (!steps)
    return {
      action: 'skip',
      status,
      reason: 'missing required fields',
      detail: 'google_drive_link (needed to tell where a submitted dataset starts)',
    };
  const inDir = `${s.inDataDir}/${uuid}`;
  const outDir = `${s.outDataDir}/${uuid}`;
  const missing: string[] = [];
  const jobs: PlannedJob[] = [];
  for (const type of steps) {
    let params: Record<string, unknown>;
    switch (type) {
      case 'google_sync':
        if (!str(d.user)) missing.push('user');
        if (!link) missing.push('google_drive_link');
        params = { user_email: str(d.user), input_dir: inDir, data_url: link };
        break;
      case 'file_extraction':
        params = {
          zip_file:
            link && isLocal(link) && link.toLowerCase().endsWith('.zip')
              ? link.slice('file://'.length)
              : `${inDir}.zip`,
          extract_dir: inDir,
        };
        break;
      case 'dataset_conversion':
        if (!str(d.sensor)) missing.push('sensor');
        params = {
          input_path: inDir,
          output_path: outDir,
          sensor_type: str(d.sensor),
          conversion_params: conversionParams(d.conversion_parameters),
        };
        break;
      case 'file_upload':
        params = { files: [inDir], destination: outDir };
        break;
      case 'data_compression':
        params = {
          source_dir: outDir,
          compression_type: conversionParams(d.conversion_parameters).compression_type ?? 'lz4',
        };
        break;
    }
    jobs.push({
      key: type,
      type,
      params: { dataset_uuid: uuid, ...params },
      priority: legacyPriority(LEGACY_PRIORITY[type]!),
      dependsOn: jobs.length ? [jobs[jobs.length - 1]!.key] : [],
    });
  }
  if (missing.length > 0)
    return {
      action: 'skip',
      status,
      reason: 'missing required fields',
      detail: [...new Set(missing)].join(', '),
    };
  return { action: 'migrate', status, jobs };
}

/** The job types a status drives now (for validate: a status that disagrees with its jobs). */
export function typesDrivenBy(status: string): string[] | null {
  const chain = CHAINS[status];
  if (chain === undefined) return null;
  return chain === 'by-link' ? ['google_sync', 'file_extraction', 'dataset_conversion'] : chain;
}
