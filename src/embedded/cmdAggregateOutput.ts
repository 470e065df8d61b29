/**
 * The writing stages of a pipeline: $out replaces a collection's documents, $merge folds
 * results into one. Both write through the engine, so they are logged and streamed.
 */
import type { Document } from 'bson';
import { CommandError } from './errors.js';
import { isPlainObject } from './bsonOrder.js';
import { runQuery } from './query.js';
import { withId } from './update.js';
import type { CommandContext } from './commandContext.js';

function target(ctx: CommandContext, spec: unknown, stage: string): { db: string; coll: string } {
  if (typeof spec === 'string') return { db: ctx.db, coll: spec };
  if (isPlainObject(spec) && typeof spec.coll === 'string')
    return { db: typeof spec.db === 'string' ? spec.db : ctx.db, coll: spec.coll };
  throw new CommandError('FailedToParse', `${stage} requires a collection name or {db, coll}`);
}

export function outInto(ctx: CommandContext, spec: unknown, docs: Document[]): void {
  const { db, coll: name } = target(ctx, spec, '$out');
  const coll = ctx.engine.ensureCollection(db, name);
  const seen = new Set<unknown>();
  const prepared = docs.map((d) => withId(d));
  for (const d of prepared) {
    const key = JSON.stringify(d._id);
    if (seen.has(key))
      throw new CommandError(
        'DuplicateKey',
        `E11000 duplicate key error collection: ${db}.${name} index: _id_ dup key in $out`,
      );
    seen.add(key);
  }
  for (const doc of [...coll.docs.values()]) ctx.engine.delete(coll, doc);
  for (const doc of prepared) ctx.engine.insert(coll, doc);
}

export function mergeInto(ctx: CommandContext, spec: unknown, docs: Document[]): void {
  const opts: Document = typeof spec === 'string' ? { into: spec } : isPlainObject(spec) ? spec : {};
  const { db, coll: name } = target(ctx, opts.into, '$merge');
  const on =
    opts.on === undefined ? ['_id'] : Array.isArray(opts.on) ? (opts.on as string[]) : [String(opts.on)];
  const whenMatched = opts.whenMatched ?? 'merge';
  const whenNotMatched = opts.whenNotMatched ?? 'insert';
  if (typeof whenMatched !== 'string')
    throw new CommandError(
      'BadValue',
      '$merge whenMatched pipelines are not supported by the jobd embedded server',
    );
  const coll = ctx.engine.ensureCollection(db, name);
  for (const raw of docs) {
    const doc = withId(raw);
    const filter: Document = {};
    for (const f of on) filter[f] = doc[f] ?? null;
    const existing = runQuery(coll, { filter, limit: 1 }).docs[0];
    if (!existing) {
      if (whenNotMatched === 'insert') ctx.engine.insert(coll, doc);
      else if (whenNotMatched === 'fail')
        throw new CommandError(
          'BadValue' as never,
          `$merge could not find a matching document in the target collection for ${JSON.stringify(filter)}`,
        );
      continue;
    }
    switch (whenMatched) {
      case 'replace':
        ctx.engine.replace(coll, existing, { ...doc, _id: existing._id }, true);
        break;
      case 'merge':
        ctx.engine.replace(coll, existing, { ...existing, ...doc, _id: existing._id }, false);
        break;
      case 'keepExisting':
        break;
      case 'fail':
        throw coll.duplicate(coll.indexes.get('_id_') as NonNullable<ReturnType<typeof coll.indexes.get>>, [
          existing._id,
        ]);
      default:
        throw new CommandError('BadValue', `$merge whenMatched '${whenMatched}' is not supported`);
    }
  }
}
