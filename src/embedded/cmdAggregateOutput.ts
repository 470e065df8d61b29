/**
 * The writing stages of a pipeline: $out replaces a collection's documents, $merge folds
 * results into one. Both write through the engine, so they are logged and streamed.
 */
import type { Document } from 'bson';
import { CommandError } from './errors.js';
import { isPlainObject } from './bsonOrder.js';
import { runQuery } from './query.js';
import { withId } from './update.js';
import { notImplemented, rejectUnknownSubfields, type CommandContext } from './commandContext.js';
import type { WriteOptions } from './engine.js';

function target(ctx: CommandContext, spec: unknown, stage: string): { db: string; coll: string } {
  if (typeof spec === 'string') return { db: ctx.db, coll: spec };
  if (isPlainObject(spec) && typeof spec.coll === 'string') {
    if (stage === '$out') {
      rejectUnknownSubfields(spec, '$out', ['db', 'coll', 'timeseries']);
      if (spec.timeseries !== undefined)
        throw notImplemented('$out.timeseries', 'there are no time series collections');
    } else rejectUnknownSubfields(spec, `${stage}.into`, ['db', 'coll']);
    return { db: typeof spec.db === 'string' ? spec.db : ctx.db, coll: spec.coll };
  }
  throw new CommandError('FailedToParse', `${stage} requires a collection name or {db, coll}`);
}

export function outInto(
  ctx: CommandContext,
  spec: unknown,
  docs: Document[],
  wopts: WriteOptions = {},
): void {
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
  // $out replaces the collection whole or not at all (MongoDB writes a temporary collection and renames it).
  const sp = ctx.engine.savepoint();
  try {
    for (const doc of [...coll.docs.values()]) ctx.engine.delete(coll, doc);
    for (const doc of prepared) ctx.engine.insert(coll, doc, wopts);
  } catch (err) {
    ctx.engine.rollBackTo(sp);
    throw err;
  }
}

const WHEN_MATCHED = ['replace', 'keepExisting', 'merge', 'fail'];
const WHEN_NOT_MATCHED = ['insert', 'discard', 'fail'];

export function mergeInto(
  ctx: CommandContext,
  spec: unknown,
  docs: Document[],
  wopts: WriteOptions = {},
): void {
  const opts: Document = typeof spec === 'string' ? { into: spec } : isPlainObject(spec) ? spec : {};
  rejectUnknownSubfields(opts, '$merge', ['into', 'on', 'let', 'whenMatched', 'whenNotMatched']);
  const { db, coll: name } = target(ctx, opts.into, '$merge');
  const on =
    opts.on === undefined ? ['_id'] : Array.isArray(opts.on) ? (opts.on as string[]) : [String(opts.on)];
  const whenMatched = opts.whenMatched ?? 'merge';
  const whenNotMatched = opts.whenNotMatched ?? 'insert';
  if (typeof whenMatched !== 'string')
    throw notImplemented(
      '$merge with a whenMatched pipeline',
      'its updates run only as operators or replacements',
    );
  if (opts.let !== undefined) throw notImplemented('$merge.let', 'it goes with a whenMatched pipeline');
  if (!WHEN_MATCHED.includes(whenMatched))
    throw new CommandError(
      'BadValue',
      `Enumeration value '${whenMatched}' for field '$merge.whenMatched' is not a valid value.`,
    );
  if (typeof whenNotMatched !== 'string' || !WHEN_NOT_MATCHED.includes(whenNotMatched))
    throw new CommandError(
      'BadValue',
      `Enumeration value '${String(whenNotMatched)}' for field '$merge.whenNotMatched' is not a valid value.`,
    );
  requireUniqueOn(ctx, db, name, on);
  const coll = ctx.engine.ensureCollection(db, name);
  for (const raw of docs) {
    const doc = withId(raw);
    const filter: Document = {};
    for (const f of on) filter[f] = doc[f] ?? null;
    const existing = runQuery(coll, { filter, limit: 1 }).docs[0];
    if (!existing) {
      if (whenNotMatched === 'insert') ctx.engine.insert(coll, doc, wopts);
      else if (whenNotMatched === 'fail')
        throw new CommandError(
          'BadValue' as never,
          `$merge could not find a matching document in the target collection for ${JSON.stringify(filter)}`,
        );
      continue;
    }
    switch (whenMatched) {
      case 'replace':
        ctx.engine.replace(coll, existing, { ...doc, _id: existing._id }, true, wopts);
        break;
      case 'merge':
        ctx.engine.replace(coll, existing, { ...existing, ...doc, _id: existing._id }, false, wopts);
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

/** MongoDB matches $merge documents only through a unique index on exactly the `on` fields. */
function requireUniqueOn(ctx: CommandContext, db: string, name: string, on: string[]): void {
  if (on.length === 1 && on[0] === '_id') return;
  const want = [...on].sort().join('\0');
  const coll = ctx.engine.getCollection(db, name);
  const found = [...(coll?.indexes.values() ?? [])].some(
    (i) =>
      i.spec.unique === true &&
      !i.spec.partialFilterExpression &&
      Object.keys(i.spec.key).sort().join('\0') === want,
  );
  if (!found)
    throw new CommandError('Location51183', 'Cannot find index to verify that join fields will be unique');
}
