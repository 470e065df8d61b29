/**
 * file_ingestion's core: a CSV, TSV, JSON-array or NDJSON file to an NDJSON record file, streamed, with
 * column types and a bad-row policy. The output (and the quarantine file) appear whole or not at all.
 */
import { stat } from 'node:fs/promises';
import { extname } from 'node:path';
import type { CoreContext } from '../../lib/context.js';
import { cleanStaleTemps } from '../../lib/atomic.js';
import { asAbort, DataInputError, throwIfAborted } from '../../lib/errors.js';
import { RecordWriter } from '../records.js';
import { convertRecord, type ColumnType } from './columnTypes.js';
import { readRowBatches, type FileFormat, type Row } from './rowSources.js';

export type BadRowPolicy = 'fail' | 'skip' | 'quarantine';

export interface FileIngestInput {
  source: string;
  output: string;
  format?: FileFormat | undefined;
  delimiter?: string | undefined;
  quote?: string | null | undefined;
  header: boolean;
  columns?: string[] | undefined;
  records_path?: string | undefined;
  types?: Record<string, ColumnType> | undefined;
  bad_rows: BadRowPolicy;
  quarantine?: string | undefined;
}

export interface BadRowSample {
  line: number;
  reason: string;
}

export interface FileIngestResult {
  source: string;
  output: string;
  format: FileFormat;
  /** Rows read: records written plus bad rows. */
  rows: number;
  records: number;
  bad_rows: number;
  skipped: number;
  quarantined: number;
  quarantine: string | null;
  /** The first few bad rows, to see what went wrong without opening a file. */
  bad_row_samples: BadRowSample[];
  bytes_read: number;
  bytes_written: number;
  duration_ms: number;
}

const SAMPLES = 5;

const BY_EXTENSION: Record<string, FileFormat> = {
  '.csv': 'csv',
  '.tsv': 'tsv',
  '.tab': 'tsv',
  '.json': 'json',
  '.ndjson': 'ndjson',
  '.jsonl': 'ndjson',
};

export function formatOf(source: string, given: FileFormat | undefined): FileFormat {
  if (given) return given;
  const ext = extname(source.replace(/\.(gz|zst)$/, '')).toLowerCase();
  const f = BY_EXTENSION[ext];
  if (!f) {
    throw new DataInputError(
      `format: cannot tell the format of "${source}" from its extension "${ext}"; give format: csv, tsv, json or ndjson`,
    );
  }
  return f;
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

export async function fileIngest(input: FileIngestInput, ctx: CoreContext): Promise<FileIngestResult> {
  const started = Date.now();
  const format = formatOf(input.source, input.format);
  if (input.bad_rows === 'quarantine' && !input.quarantine) {
    throw new DataInputError(
      'quarantine: bad_rows is "quarantine", so give quarantine (a file path in a data dir)',
    );
  }
  const { size } = await stat(input.source).catch((err: NodeJS.ErrnoException) => {
    throw new DataInputError(`source: "${input.source}" cannot be read: ${err.code ?? err.message}`);
  });
  await cleanStaleTemps(input.output);
  if (input.quarantine) await cleanStaleTemps(input.quarantine);

  const out = new RecordWriter(input.output);
  const quarantine = input.bad_rows === 'quarantine' ? new RecordWriter(input.quarantine!) : null;
  let bytesRead = 0;
  let lastPercent = -1;
  let rows = 0;
  let bad = 0;
  const samples: BadRowSample[] = [];

  const onBad = (row: Row, reason: string): void => {
    bad += 1;
    if (samples.length < SAMPLES) samples.push({ line: row.line, reason });
    if (input.bad_rows === 'fail') {
      throw new DataInputError(
        `${input.source}, ${format === 'json' ? 'element' : 'line'} ${row.line}: ${reason} (bad_rows is "fail"; "skip" or "quarantine" go on past bad rows)`,
        { line: row.line, reason },
      );
    }
    if (quarantine) {
      quarantine.add({
        line: row.line,
        reason,
        ...(row.raw !== undefined ? { raw: row.raw } : {}),
      });
    }
  };

  try {
    const source = readRowBatches(input.source, {
      format,
      delimiter: input.delimiter,
      quote: input.quote,
      header: input.header,
      columns: input.columns,
      recordsPath: input.records_path,
      keepRaw: quarantine !== null,
      signal: ctx.signal,
      onBytes: (read) => {
        bytesRead = read;
        const percent = size > 0 ? Math.floor((read / size) * 100) : 100;
        if (percent !== lastPercent) {
          lastPercent = percent;
          ctx.progress(percent, `${mb(read)} of ${mb(size)} read`);
        }
      },
    });
    // A batch is converted and buffered synchronously; the writers are waited on once per batch.
    for await (const batch of source) {
      for (const row of batch) {
        rows += 1;
        if (!row.record) {
          onBad(row, row.error ?? 'unreadable row');
          continue;
        }
        const errors = convertRecord(row.record, input.types);
        if (errors.length) {
          onBad(
            row,
            errors
              .map((e) => `${e.field}: ${JSON.stringify(e.value)} is not ${e.type}: ${e.reason}`)
              .join('; '),
          );
          continue;
        }
        out.add(row.record);
      }
      await out.flushFull();
      await quarantine?.flushFull();
    }
    throwIfAborted(ctx.signal, 'file_ingestion');
    await out.commit();
    await quarantine?.commit();
  } catch (err) {
    await out.abort();
    await quarantine?.abort();
    throw asAbort(err, ctx.signal, 'file_ingestion');
  }
  ctx.progress(100, `${out.count} records written`);
  return {
    source: input.source,
    output: input.output,
    format,
    rows,
    records: out.count,
    bad_rows: bad,
    skipped: quarantine ? 0 : bad,
    quarantined: quarantine ? bad : 0,
    quarantine: quarantine ? input.quarantine! : null,
    bad_row_samples: samples,
    bytes_read: bytesRead,
    bytes_written: out.bytes,
    duration_ms: Date.now() - started,
  };
}
