/**
 * The dataset job types' defaults, from the legacy service's per-type table (timeout, max attempts,
 * priority). The registry applies them when the settings load (without importing the type modules)
 * and each type shows them in `jobctl types`; the settings' jobTypes.<name> keys win over them.
 *
 * Priority: jobd claims the lowest number first and defaults to 5, so the legacy 1 (high), 2 (normal)
 * and 3 (low) become 3, 5 and 7: a normal dataset job ranks with any other job, and there is room
 * on both sides.
 */
const MIN = 60_000;

/** jobd's priority for a legacy one (also what `jobctl migrate` gives the jobs it creates). */
export const legacyPriority = (p: 1 | 2 | 3): number => ({ 1: 3, 2: 5, 3: 7 })[p];

export interface DataTypeDefaults {
  timeoutMs: number;
  maxAttempts: number;
  priority: number;
}

export const DATA_TYPE_DEFAULTS = {
  rsync_transfer: { timeoutMs: 90 * MIN, maxAttempts: 3, priority: legacyPriority(2) },
  google_sync: { timeoutMs: 60 * MIN, maxAttempts: 3, priority: legacyPriority(2) },
  // Not in the legacy table: google_sync's general form, with its settings.
  remote_sync: { timeoutMs: 60 * MIN, maxAttempts: 3, priority: legacyPriority(2) },
  file_upload: { timeoutMs: 30 * MIN, maxAttempts: 5, priority: legacyPriority(2) },
  file_extraction: { timeoutMs: 15 * MIN, maxAttempts: 3, priority: legacyPriority(1) },
  data_compression: { timeoutMs: 45 * MIN, maxAttempts: 2, priority: legacyPriority(3) },
  backup_creation: { timeoutMs: 60 * MIN, maxAttempts: 2, priority: legacyPriority(3) },
  data_validation: { timeoutMs: 30 * MIN, maxAttempts: 2, priority: legacyPriority(2) },
  dataset_conversion: { timeoutMs: 120 * MIN, maxAttempts: 2, priority: legacyPriority(1) },
} as const satisfies Record<string, DataTypeDefaults>;

export type DataTypeName = keyof typeof DATA_TYPE_DEFAULTS;

/** Each type's module, beside this file (without extension). */
export const DATA_TYPE_MODULES: Record<DataTypeName, string> = {
  rsync_transfer: 'rsyncTransfer',
  google_sync: 'googleSync',
  remote_sync: 'remoteSync',
  file_upload: 'fileUpload',
  file_extraction: 'fileExtraction',
  data_compression: 'dataCompression',
  backup_creation: 'backupCreation',
  data_validation: 'dataValidation',
  dataset_conversion: 'datasetConversion',
};
