/**
 * The named sources the daemon handed a job that reads one (settings tabular.sources, as JSON in
 * JOBD_TABULAR_SOURCES: only api_ingestion, database_ingestion and data_aggregation jobs get it, since
 * it holds credentials).
 */
import type { TabularSource } from '../../config/tabular.js';

export function handedSources(text = process.env.JOBD_TABULAR_SOURCES): Record<string, TabularSource> {
  if (!text) return {};
  try {
    return JSON.parse(text) as Record<string, TabularSource>;
  } catch {
    // Written by the daemon from validated settings; the text is not quoted: it holds credentials.
    throw new Error('JOBD_TABULAR_SOURCES is not JSON');
  }
}
