/**
 * database_ingestion's core: a MongoDB find or aggregation, from a source of the settings, to an NDJSON
 * record file (relaxed Extended JSON), in batches by cursor. The output appears whole or not at all; a
 * new attempt runs the query again (a cursor cannot be resumed across processes).
 */
import type { MongoSourceSettings, TabularSource } from '../../../config/tabular.js';
import { redact as redactUriText, protectUri } from '../../../redact.js';
import type { CoreContext } from '../../lib/context.js';
import { cleanStaleTemps, discardTemp, renameIntoPlace, tempSibling } from '../../lib/atomic.js';
import { asAbort, DataInputError, DataJobError, throwIfAborted } from '../../lib/errors.js';
import { createWriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { once } from 'node:events';

export interface DbIngestInput {
  source: string;
  database?: string | undefined;
  collection: string;
  filter?: Record<string, unknown> | undefined;
  projection?: Record<string, unknown> | undefined;
  sort?: Record<string, unknown> | undefined;
  limit?: number | undefined;
  pipeline?: Record<string, unknown>[] | undefined;
  batch_size: number;
  output: string;
}

export interface DbIngestResult {
  source: string;
  database: string;
  collection: string;
  output: string;
  records: number;
  batches: number;
  bytes_written: number;
  duration_ms: number;
}

export function mongoSource(
  sources: Readonly<Record<string, TabularSource>>,
  name: string,
): MongoSourceSettings {
  const s = Object.hasOwn(sources, name) ? sources[name] : undefined;
  if (!s || s.kind !== 'mongodb') {
    const names = Object.entries(sources)
      .filter(([, v]) => v.kind === 'mongodb')
      .map(([k]) => k);
    throw new DataInputError(
      `source: "${name}" is not a mongodb source of the settings' tabular.sources (mongodb sources: ${names.length ? names.join(', ') : 'none'})`,
    );
  }
  return s;
}

/** The database a URI names (its path), if any. */
export function uriDatabase(uri: string): string | undefined {
  const m = /^mongodb(?:\+srv)?:\/\/[^/]*\/([^?]+)/.exec(uri);
  return m?.[1] ? decodeURIComponent(m[1]) : undefined;
}

/**
 * A failed read of a user's database as a job error: an abort stays an abort; a server's refusal of the
 * query (a bad operator, a missing permission) is not retried, as it will not pass on retry; anything
 * else (the connection) is. The message is redacted: the driver may quote the URI.
 */
export function databaseReadError(err: unknown, signal: AbortSignal, type: string, ns: string): Error {
  const e = asAbort(err, signal, type);
  if (e instanceof DataJobError) return e;
  const m = e as Error & { codeName?: string; code?: unknown };
  const refused = typeof m.code === 'number' && m.codeName !== undefined;
  return new DataJobError(
    'DatabaseReadError',
    `${type}: ${ns}: ${redactUriText(m.message ?? String(err))}${m.codeName ? ` (${m.codeName})` : ''}`,
    { retryable: !refused, code: 'JOBD_DATABASE_READ_FAILED' },
  );
}

export async function dbIngest(
  input: DbIngestInput,
  ctx: CoreContext,
  env: { sources: Readonly<Record<string, TabularSource>> },
): Promise<DbIngestResult> {
  const started = Date.now();
  const src = mongoSource(env.sources, input.source);
  // The driver's messages may quote the URI or its password: they are masked before they leave.
  protectUri(src.uri);
  const database = input.database ?? src.database ?? uriDatabase(src.uri);
  if (!database) {
    throw new DataInputError(
      `database: give database (the source "${input.source}" names none, in its settings nor its URI)`,
    );
  }
  await cleanStaleTemps(input.output);
  const tmp = tempSibling(input.output);
  const out = createWriteStream(tmp, { flags: 'wx' });
  let records = 0;
  let batches = 0;
  let bytes = 0;
  try {
    const { readMongo } = await import('../../../sources/mongoReader.js');
    for await (const batch of readMongo({
      uri: src.uri,
      database,
      collection: input.collection,
      filter: input.filter,
      projection: input.projection,
      sort: input.sort,
      limit: input.limit,
      pipeline: input.pipeline,
      batchSize: input.batch_size,
      signal: ctx.signal,
      appName: 'jobd-database-ingestion',
    })) {
      const text = batch.join('\n') + '\n';
      bytes += Buffer.byteLength(text);
      records += batch.length;
      batches += 1;
      if (!out.write(text)) await once(out, 'drain');
      ctx.progress(0, `${records} documents`);
    }
    throwIfAborted(ctx.signal, 'database_ingestion');
    await new Promise<void>((resolve, reject) => {
      out.once('error', reject);
      out.end(() => resolve());
    });
    const fh = await open(tmp, 'r');
    await fh.sync().finally(() => fh.close());
    await renameIntoPlace(tmp, input.output);
  } catch (err) {
    await discardTemp(out, tmp);
    throw databaseReadError(err, ctx.signal, 'database_ingestion', `${database}.${input.collection}`);
  }
  ctx.progress(100, `${records} documents`);
  return {
    source: input.source,
    database,
    collection: input.collection,
    output: input.output,
    records,
    batches,
    bytes_written: bytes,
    duration_ms: Date.now() - started,
  };
}
