/**
 * The tabular job types' modules and defaults. The registry applies them when the settings load
 * (without importing the type modules); the settings' jobTypes.<name> keys win over them.
 */
import type { ExecutionMode } from '../../types.js';

/** Timeouts below are written in minutes. */
export const MIN = 60_000;

export interface TabularTypeDefaults {
  /** Each type's module, beside this file (without extension). */
  module: string;
  mode: ExecutionMode;
  timeoutMs: number;
  maxAttempts: number;
}

export const TABULAR_TYPES = {
  // Ingestion: file_ingestion, api_ingestion, database_ingestion.
  file_ingestion: { module: 'fileIngestion', mode: 'pooled', timeoutMs: 120 * MIN, maxAttempts: 3 },
  api_ingestion: { module: 'apiIngestion', mode: 'pooled', timeoutMs: 120 * MIN, maxAttempts: 5 },
  database_ingestion: { module: 'databaseIngestion', mode: 'pooled', timeoutMs: 120 * MIN, maxAttempts: 3 },

  // Processing: data_transform, data_aggregation, record_validation.
  data_transform: { module: 'dataTransform', mode: 'pooled', timeoutMs: 60 * MIN, maxAttempts: 2 },
  data_aggregation: { module: 'dataAggregation', mode: 'isolated', timeoutMs: 120 * MIN, maxAttempts: 2 },
  record_validation: { module: 'recordValidation', mode: 'pooled', timeoutMs: 60 * MIN, maxAttempts: 2 },

  // Analysis: statistical_analysis, report_generation.
  statistical_analysis: {
    module: 'statisticalAnalysis',
    mode: 'isolated',
    timeoutMs: 60 * MIN,
    maxAttempts: 2,
  },
  report_generation: { module: 'reportGeneration', mode: 'isolated', timeoutMs: 15 * MIN, maxAttempts: 2 },
} as const satisfies Record<string, TabularTypeDefaults>;

export type TabularTypeName = keyof typeof TABULAR_TYPES;
