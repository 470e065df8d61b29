/**
 * The `datasets` settings: where the legacy datasets collection lives, how its `status` follows the
 * jobs (docs/datasets.md), and the named pipelines `jobctl dataset process` builds.
 */
import { z } from 'zod';
import { LEGACY_VOCABULARY } from '../datasets/legacyStatus.js';

export interface PipelineStageSettings {
  /** The stage's key in its workflow (default: its type). */
  key?: string;
  type: string;
  /**
   * Params merged over the built-in ones of a legacy type (or the whole params of another type).
   * Strings may hold {uuid} {in} {out} {user} {sensor} {link}, filled from the dataset.
   */
  params?: Record<string, unknown>;
  /** Move the dataset's status with this legacy type's vocabulary (default: the stage's own type). */
  statusAs?: string;
}

export interface PipelineSettings {
  description?: string;
  stages: PipelineStageSettings[];
}

export interface DatasetSettings {
  /** The datasets collection (the legacy one is `visstoredatas`), its documents matched by `uuid`. */
  collection: string;
  /** Its database; null: jobd's own. */
  database: string | null;
  /** The data dir whose `<uuid>` folder is a dataset's input (the legacy in_data_dir). */
  inDataDir: string;
  /** The data dir whose `<uuid>` folder is a dataset's converted output (the legacy out_data_dir). */
  outDataDir: string;
  /** Move datasets' `status` as their jobs change state (on every daemon). */
  statusUpdates: boolean;
  /** Longest sleep of the status service between passes (change streams wake it sooner). */
  statusPollMs: number;
  /** Status history entries kept on a dataset (newest last). */
  historyLimit: number;
  /** Pipelines added to, or replacing, the built-in ones by name. */
  pipelines: Record<string, PipelineSettings>;
}

export const DATASET_DEFAULTS: DatasetSettings = {
  collection: 'visstoredatas',
  database: null,
  inDataDir: 'upload',
  outDataDir: 'converted',
  statusUpdates: true,
  statusPollMs: 500,
  historyLimit: 50,
  pipelines: {},
};

const NAME = /^[A-Za-z][A-Za-z0-9_.:-]{0,99}$/;
const NAME_RULE = 'must start with a letter and use letters, digits, _ . : - (at most 100)';

function int(min: number, max: number, unit = ''): z.ZodNumber {
  const msg = `must be an integer from ${min} to ${max}${unit}`;
  return z.number({ error: msg }).int({ error: msg }).min(min, { error: msg }).max(max, { error: msg });
}

const text = (what: string) =>
  z.string({ error: `must be ${what}` }).min(1, { error: `must be ${what} (not empty)` });

/** Why MongoDB would refuse a collection name (its documented restrictions), or null. */
export function collectionNameProblem(name: string): string | null {
  if (name === '') return 'must be a collection name (not empty)';
  if (name.includes('$') || name.includes('\0'))
    return 'must be a collection name without "$" or a null character';
  if (name.startsWith('system.')) return 'must be a collection name not starting with "system."';
  return null;
}

const stageSchema = z.strictObject(
  {
    key: z.string({ error: NAME_RULE }).regex(NAME, { error: NAME_RULE }).optional(),
    type: z.string({ error: `a job type name ${NAME_RULE}` }).regex(NAME, { error: NAME_RULE }),
    params: z.record(z.string(), z.unknown(), { error: 'must be an object of params' }).optional(),
    statusAs: z
      .enum(Object.keys(LEGACY_VOCABULARY) as [string, ...string[]], {
        error: `must be a legacy job type: ${Object.keys(LEGACY_VOCABULARY).join(', ')}`,
      })
      .optional(),
  },
  { error: 'must be an object { type, key?, params?, statusAs? }' },
);

export const datasetsSchema = z.strictObject({
  collection: z
    .string({ error: 'must be a collection name' })
    .check((c) => {
      const problem = collectionNameProblem(c.value);
      if (problem) c.issues.push({ code: 'custom', message: problem, input: c.value });
    })
    .optional(),
  database: text('a database name').nullable().optional(),
  inDataDir: text('a data dir name (a key of dataDirs)').optional(),
  outDataDir: text('a data dir name (a key of dataDirs)').optional(),
  statusUpdates: z.boolean({ error: 'must be true or false' }).optional(),
  statusPollMs: int(10, 600_000, ' (ms)').optional(),
  historyLimit: int(1, 10_000).optional(),
  pipelines: z
    .record(
      z.string().regex(NAME, { error: `pipeline names ${NAME_RULE}` }),
      z.strictObject(
        {
          description: z.string({ error: 'must be text' }).optional(),
          stages: z
            .array(stageSchema, { error: 'must be a list of stages' })
            .min(1, { error: 'must name at least one stage' }),
        },
        { error: 'must be an object { description?, stages: [...] }' },
      ),
      { error: 'must be an object of pipelines by name' },
    )
    .optional(),
});

export type DatasetsInput = z.infer<typeof datasetsSchema>;

/** The settings as given, over the defaults (also for configs built without the loader). */
export function resolveDatasets(
  given: DatasetsInput | Partial<DatasetSettings> | undefined,
): DatasetSettings {
  const g = given ?? {};
  const pick = <K extends keyof DatasetSettings>(k: K): DatasetSettings[K] =>
    (g[k] ?? DATASET_DEFAULTS[k]) as DatasetSettings[K];
  return {
    collection: pick('collection'),
    database: g.database ?? null,
    inDataDir: pick('inDataDir'),
    outDataDir: pick('outDataDir'),
    statusUpdates: pick('statusUpdates'),
    statusPollMs: pick('statusPollMs'),
    historyLimit: pick('historyLimit'),
    pipelines: { ...(g.pipelines ?? {}) } as Record<string, PipelineSettings>,
  };
}
