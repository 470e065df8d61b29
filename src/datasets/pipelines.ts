/**
 * The named dataset pipelines (the legacy chains) and how one becomes a workflow for a dataset: each
 * stage's params are built from the dataset document, the way the legacy service built its jobs'.
 * Built-ins are defined here only; `datasets.pipelines` in the settings adds or replaces them by name.
 */
import { join } from 'node:path';
import type { DatasetSettings, PipelineSettings, PipelineStageSettings } from '../config/datasets.js';
import { ValidationError } from '../errors.js';
import type { WorkflowSpec } from '../workflows/submit.js';
import { LEGACY_VOCABULARY, STATUS_TAG_PREFIX } from './legacyStatus.js';

export const BUILTIN_PIPELINES: Readonly<Record<string, PipelineSettings>> = {
  'sync-convert': {
    description: 'sync the remote folder (google_drive_link) into the input folder, then convert it',
    stages: [
      { key: 'sync', type: 'google_sync' },
      { key: 'convert', type: 'dataset_conversion' },
    ],
  },
  'unzip-convert': {
    description: 'unpack the uploaded archive into the input folder, then convert it',
    stages: [
      { key: 'unzip', type: 'file_extraction' },
      { key: 'convert', type: 'dataset_conversion' },
    ],
  },
  upload: {
    description: 'upload the input folder',
    stages: [{ key: 'upload', type: 'file_upload' }],
  },
};

/** The tag every job of a pipeline carries: `dataset-pipeline:<name>`. */
export const PIPELINE_TAG_PREFIX = 'dataset-pipeline:';

/** Built-ins, then the settings' pipelines over them. */
export function pipelinesOf(settings: DatasetSettings): Record<string, PipelineSettings> {
  return { ...BUILTIN_PIPELINES, ...settings.pipelines };
}

/** What a pipeline's params are made of. */
export interface DatasetFacts {
  uuid: string;
  /** `<in data dir>/<uuid>` and `<out data dir>/<uuid>`. */
  in: string;
  out: string;
  user: string | null;
  sensor: string | null;
  link: string | null;
  conversionParams: Record<string, string>;
}

/** A uuid becomes a folder name: nothing that could leave the data dir. */
const SAFE_UUID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function str(v: unknown): string | null {
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : null;
}

export function datasetFacts(
  doc: Record<string, unknown>,
  uuid: string,
  settings: DatasetSettings,
  dataDirs: Readonly<Record<string, string>>,
): DatasetFacts {
  if (!SAFE_UUID.test(uuid) || uuid.includes('..'))
    throw new ValidationError(
      `dataset uuid ${JSON.stringify(uuid)} cannot name a folder: letters, digits and . _ - are allowed (at most 128)`,
    );
  const dir = (key: 'inDataDir' | 'outDataDir'): string => {
    const name = settings[key];
    const root = dataDirs[name];
    if (!root)
      throw new ValidationError(
        `datasets.${key} = ${JSON.stringify(name)} names a data dir that dataDirs does not define (defined: ${Object.keys(dataDirs).sort().join(', ') || 'none'})`,
      );
    return join(root, uuid);
  };
  const cp = doc.conversion_parameters;
  return {
    uuid,
    in: dir('inDataDir'),
    out: dir('outDataDir'),
    user: str(doc.user),
    sensor: str(doc.sensor),
    link: str(doc.google_drive_link),
    conversionParams:
      cp !== null && typeof cp === 'object' && !Array.isArray(cp)
        ? Object.fromEntries(Object.entries(cp as Record<string, unknown>).map(([k, x]) => [k, String(x)]))
        : {},
  };
}

function need(v: string | null, field: string, type: string): string {
  if (v === null)
    throw new ValidationError(
      `the dataset has no ${field}, which a ${type} stage needs (its params are built from it)`,
    );
  return v;
}

/** The legacy service's params for its job types, built from the dataset. */
function builtinParams(type: string, f: DatasetFacts): Record<string, unknown> | null {
  const localZip = f.link?.startsWith('file://') && f.link.toLowerCase().endsWith('.zip');
  switch (type) {
    case 'google_sync': {
      const link = need(f.link, 'google_drive_link', type);
      // A local (file://) source needs no credentials; a remote one uses the user's (the auth data dir).
      const local = link.startsWith('file://');
      return {
        ...(local ? {} : { user_email: need(f.user, 'user', type) }),
        input_dir: f.in,
        data_url: link,
      };
    }
    case 'file_extraction':
      return { zip_file: localZip ? f.link!.slice('file://'.length) : `${f.in}.zip`, extract_dir: f.in };
    case 'dataset_conversion':
      return {
        input_path: f.in,
        output_path: f.out,
        sensor_type: need(f.sensor, 'sensor', type),
        conversion_params: f.conversionParams,
      };
    case 'file_upload':
      return { files: [f.in], destination: f.out };
    case 'data_compression':
      return { source_dir: f.out, compression_type: f.conversionParams.compression_type ?? 'lz4' };
    default:
      return null;
  }
}

const PLACEHOLDER = /\{(uuid|in|out|user|sensor|link)\}/g;

/** {uuid} {in} {out} {user} {sensor} {link} in every string of `v`, filled from the dataset. */
function fill(v: unknown, f: DatasetFacts, where: string): unknown {
  if (typeof v === 'string')
    return v.replace(PLACEHOLDER, (_m, name: keyof DatasetFacts) => {
      const x = f[name];
      if (typeof x !== 'string')
        throw new ValidationError(`${where} uses {${name}}, but the dataset has no value for it`);
      return x;
    });
  if (Array.isArray(v)) return v.map((x, i) => fill(x, f, `${where}[${i}]`));
  if (v !== null && typeof v === 'object')
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fill(x, f, `${where}.${k}`)]));
  return v;
}

export function stageParams(
  stage: PipelineStageSettings,
  f: DatasetFacts,
  where: string,
): Record<string, unknown> {
  const base = builtinParams(stage.type, f);
  if (base === null && stage.params === undefined)
    throw new ValidationError(
      `${where}: job type ${JSON.stringify(stage.type)} has no built-in params; give them in ${where}.params`,
    );
  return { ...(base ?? {}), ...((fill(stage.params ?? {}, f, `${where}.params`) as object) ?? {}) };
}

/**
 * The workflow of `pipeline` for the dataset: its stages in a chain, each waiting for the one before,
 * every job with the dataset's uuid, the pipeline's tag, and the vocabulary tag of `statusAs`.
 */
export function pipelineWorkflow(
  name: string,
  pipeline: PipelineSettings,
  f: DatasetFacts,
  workflowId: string,
): WorkflowSpec {
  const keys = new Set<string>();
  const jobs = pipeline.stages.map((stage, i) => {
    const where = `pipeline ${name} stages[${i}]`;
    const key = stage.key ?? stage.type;
    if (keys.has(key))
      throw new ValidationError(
        `${where}: key ${JSON.stringify(key)} is used twice; give the stages distinct keys`,
      );
    keys.add(key);
    if (stage.statusAs !== undefined && !(stage.statusAs in LEGACY_VOCABULARY))
      throw new ValidationError(
        `${where}.statusAs = ${JSON.stringify(stage.statusAs)} is not allowed: must be one of ${Object.keys(LEGACY_VOCABULARY).join(', ')}`,
      );
    const prev = i > 0 ? (pipeline.stages[i - 1]!.key ?? pipeline.stages[i - 1]!.type) : null;
    return {
      key,
      type: stage.type,
      params: stageParams(stage, f, where),
      ...(prev ? { dependsOn: [prev] } : {}),
      options: {
        datasetUuid: f.uuid,
        tags: [
          `${PIPELINE_TAG_PREFIX}${name}`,
          ...(stage.statusAs !== undefined ? [`${STATUS_TAG_PREFIX}${stage.statusAs}`] : []),
        ],
      },
    };
  });
  return { id: workflowId, name: `dataset ${f.uuid}: ${name}`, jobs };
}
