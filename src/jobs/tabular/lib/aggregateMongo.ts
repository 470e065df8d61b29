/**
 * data_aggregation in MongoDB: the grouping runs in the database as one aggregation pipeline ($match,
 * $group, $sort) against a mongodb source of the settings, and only the groups come back, in batches
 * by cursor, to be written as NDJSON. The operations mean what they mean on files (metrics.ts): sum and
 * mean over numbers only, min and max ignoring null and missing, count of a field counting values that
 * are not null, distinct_count of values other than null. Groups come in MongoDB's order of their keys.
 */
import type { TabularSource } from '../../../config/tabular.js';
import { protectUri } from '../../../redact.js';
import type { CoreContext } from '../../lib/context.js';
import { DataInputError, throwIfAborted } from '../../lib/errors.js';
import { RecordWriter } from '../records.js';
import type { MetricSpec } from './metrics.js';
import { databaseReadError, mongoSource, uriDatabase } from './dbIngest.js';

export interface MongoAggregateSpec {
  source: string;
  database?: string | undefined;
  collection: string;
  filter?: Record<string, unknown> | undefined;
  groupBy: string[];
  metrics: MetricSpec[];
  /** Resolved path. */
  output: string;
  batchSize: number;
}

export interface MongoAggregateResult {
  database: string;
  collection: string;
  groups: number;
  rows: number;
  pipeline: Record<string, unknown>[];
}

const notNull = (expr: unknown) => ({ $ne: [{ $ifNull: [expr, null] }, null] });

/** The pipeline: group keys under _id.g<i>, metric states under m<i>. */
export function groupPipeline(
  groupBy: readonly string[],
  metrics: readonly MetricSpec[],
  filter?: Record<string, unknown>,
): Record<string, unknown>[] {
  const id = Object.fromEntries(groupBy.map((f, i) => [`g${i}`, `$${f}`]));
  // n: the group's rows, so the result counts the rows grouped as the file side does.
  const acc: Record<string, unknown> = { n: { $sum: 1 } };
  const shape: Record<string, unknown> = { _id: 1, n: 1 };
  const ops: Record<MetricSpec['op'], (v: string) => unknown> = {
    count: (v) => (v === '$*' ? { $sum: 1 } : { $sum: { $cond: [notNull(v), 1, 0] } }),
    sum: (v) => ({ $sum: { $cond: [{ $isNumber: v }, v, null] } }),
    mean: (v) => ({ $avg: { $cond: [{ $isNumber: v }, v, null] } }),
    min: (v) => ({ $min: v }),
    max: (v) => ({ $max: v }),
    distinct_count: (v) => ({ $addToSet: v }),
  };
  metrics.forEach((m, i) => {
    acc[`m${i}`] = ops[m.op](`$${m.field}`);
    // A distinct count's set becomes its size, null left out.
    shape[`m${i}`] =
      m.op === 'distinct_count'
        ? { $size: { $filter: { input: `$m${i}`, cond: { $ne: ['$$this', null] } } } }
        : 1;
  });
  return [
    ...(filter && Object.keys(filter).length ? [{ $match: filter }] : []),
    { $group: { _id: id, ...acc } },
    { $project: shape },
    // (No group fields: one group, and MongoDB refuses a $sort without keys.)
    ...(groupBy.length ? [{ $sort: Object.fromEntries(groupBy.map((_, i) => [`_id.g${i}`, 1])) }] : []),
  ];
}

export async function aggregateInMongo(
  spec: MongoAggregateSpec,
  ctx: CoreContext,
  env: { sources: Readonly<Record<string, TabularSource>> },
): Promise<MongoAggregateResult> {
  const src = mongoSource(env.sources, spec.source);
  protectUri(src.uri);
  const database = spec.database ?? src.database ?? uriDatabase(src.uri);
  if (!database) {
    throw new DataInputError(
      `database: give database (the source "${spec.source}" names none, in its settings nor its URI)`,
    );
  }
  const pipeline = groupPipeline(spec.groupBy, spec.metrics, spec.filter);
  const out = new RecordWriter(spec.output);
  let rows = 0;
  try {
    const { readMongo } = await import('../../../sources/mongoReader.js');
    for await (const batch of readMongo({
      uri: src.uri,
      database,
      collection: spec.collection,
      pipeline,
      batchSize: spec.batchSize,
      signal: ctx.signal,
      appName: 'jobd-data-aggregation',
    })) {
      for (const line of batch) {
        const doc = JSON.parse(line) as { _id?: Record<string, unknown>; n?: number } & Record<
          string,
          unknown
        >;
        rows += doc.n ?? 0;
        const rec: Record<string, unknown> = {};
        spec.groupBy.forEach((f, i) => (rec[f] = doc._id?.[`g${i}`] ?? null));
        spec.metrics.forEach((m, i) => (rec[m.name] = doc[`m${i}`] ?? (m.op === 'count' ? 0 : null)));
        await out.write(rec);
      }
      ctx.progress(0, `${out.count} groups`);
    }
    throwIfAborted(ctx.signal, 'data_aggregation');
    await out.commit();
  } catch (err) {
    await out.abort();
    throw databaseReadError(err, ctx.signal, 'data_aggregation', `${database}.${spec.collection}`);
  }
  return { database, collection: spec.collection, groups: out.count, rows, pipeline };
}
