/**
 * The change events of namespace and index changes, shaped as MongoDB 7.0 derives them from its oplog:
 * operationDescription is what the oplog entry says about the change (the create options and _id
 * index, the index specs, the collMod options), stateBeforeChange the collection's options before a
 * collMod. Views change through system.views in MongoDB, so their events carry no collection UUID.
 */
import type { Document } from 'bson';
import type { ChangeEvent } from './changeLog.js';
import type { Collection } from './collection.js';
import { Index, type IndexSpec } from './indexes.js';
import { isView } from './views.js';

/** An event before the engine stamps it with its cluster time. */
export type NewChangeEvent = Omit<ChangeEvent, 'seq' | 'wallMs'>;

const ID_INDEX = { v: 2, key: { _id: 1 }, name: '_id_' };

function viewDefinition(options: Document): Document {
  const out: Document = { viewOn: options.viewOn, pipeline: options.pipeline };
  if (options.collation !== undefined) out.collation = options.collation;
  return out;
}

export function createEvent(coll: Collection): NewChangeEvent {
  const at = { db: coll.db, coll: coll.name };
  if (isView(coll))
    return { operationType: 'create', ...at, description: viewDefinition(coll.options), view: true };
  return {
    operationType: 'create',
    ...at,
    uuid: coll.uuid,
    description: { ...coll.options, idIndex: ID_INDEX },
  };
}

export function dropEvent(coll: Collection): NewChangeEvent {
  return isView(coll)
    ? { operationType: 'drop', db: coll.db, coll: coll.name, view: true }
    : { operationType: 'drop', db: coll.db, coll: coll.name, uuid: coll.uuid };
}

/** collMod: `changes` are the options the command named; `previous` the options it replaced. */
export function modifyEvent(coll: Collection, changes: Document, previous: Document): NewChangeEvent {
  const at = { db: coll.db, coll: coll.name };
  if (isView(coll))
    return { operationType: 'modify', ...at, description: viewDefinition(coll.options), view: true };
  return {
    operationType: 'modify',
    ...at,
    uuid: coll.uuid,
    description: changes,
    stateBeforeChange: { collectionOptions: { uuid: coll.uuid, ...previous } },
  };
}

/** A rename; `dropped` is the collection it replaced, if any. */
export function renameEvent(
  coll: Collection,
  from: { db: string; coll: string },
  dropped: Collection | undefined,
): NewChangeEvent {
  const to = { db: coll.db, coll: coll.name };
  const description: Document = { to };
  if (dropped) description.dropTarget = dropped.uuid;
  return { operationType: 'rename', ...from, uuid: coll.uuid, to, description };
}

export function indexesEvent(
  operationType: 'createIndexes' | 'dropIndexes',
  coll: Collection,
  specs: IndexSpec[],
): NewChangeEvent {
  return {
    operationType,
    db: coll.db,
    coll: coll.name,
    uuid: coll.uuid,
    description: { indexes: specs.map((spec) => new Index(spec).describe()) },
  };
}
