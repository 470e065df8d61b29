/**
 * Change streams: aggregate with a leading $changeStream opens a cursor over the change log.
 * getMore returns the events after the cursor's position, waiting up to maxTimeMS (the driver's
 * maxAwaitTimeMS, 1000 by default) for one to arrive without holding up other connections.
 */
import { Long, Timestamp, type Document } from 'bson';
import { CommandError } from './errors.js';
import { deepClone, isPlainObject } from './bsonOrder.js';
import { decodeToken, describeUpdate, encodeToken, type ChangeEvent } from './changeLog.js';
import type { Batch, Cursor } from './cursor.js';
import type { Engine } from './engine.js';
import { runPipeline } from './mql.js';
import type { CommandContext } from './commandContext.js';

const SPEC_FIELDS = [
  'fullDocument',
  'fullDocumentBeforeChange',
  'resumeAfter',
  'startAfter',
  'startAtOperationTime',
  'allChangesForCluster',
  'showExpandedEvents',
];
const ALLOWED_STAGES = new Set([
  '$match',
  '$project',
  '$addFields',
  '$set',
  '$unset',
  '$replaceRoot',
  '$replaceWith',
  '$redact',
]);
const DEFAULT_AWAIT_MS = 1000;
const INTERNAL_DBS = new Set(['admin', 'config', 'local']);

interface Scope {
  db: string | null;
  coll: string | null;
}

class ChangeStreamCursor implements Cursor {
  lastUsed = Date.now();
  busy = false;
  private closed = false;
  private invalidated = false;
  private shuttingDown = false;

  constructor(
    readonly id: number,
    readonly ns: string,
    private readonly engine: Engine,
    private readonly scope: Scope,
    private pos: number,
    private readonly fullDocument: string,
    private readonly pipeline: Document[],
  ) {}

  private inScope(e: ChangeEvent): boolean {
    if (this.scope.db === null) return !INTERNAL_DBS.has(e.db);
    if (e.db !== this.scope.db) return false;
    if (this.scope.coll === null) return true;
    return e.coll === this.scope.coll && e.operationType !== 'dropDatabase';
  }

  private invalidates(e: ChangeEvent): boolean {
    if (this.scope.db === null) return false;
    if (this.scope.coll === null) return e.operationType === 'dropDatabase';
    return e.operationType === 'drop' || e.operationType === 'rename';
  }

  private render(e: ChangeEvent): Document {
    const out: Document = {
      _id: encodeToken(e.seq),
      operationType: e.operationType,
      clusterTime: e.clusterTime,
      wallTime: e.wallTime,
    };
    if (e.operationType === 'insert' || e.operationType === 'replace') out.fullDocument = e.fullDocument;
    if (e.operationType === 'update' && this.fullDocument === 'updateLookup') {
      out.fullDocument = (e.coll && this.engine.getCollection(e.db, e.coll)?.get(e.documentKey?._id)) || null;
    }
    out.ns = e.coll === undefined ? { db: e.db } : { db: e.db, coll: e.coll };
    if (e.to) out.to = e.to;
    if (e.documentKey) out.documentKey = e.documentKey;
    if (e.operationType === 'update' && e.before && e.fullDocument)
      out.updateDescription = describeUpdate(e.before, e.fullDocument);
    return out;
  }

  /** Events available now, up to `max` (0 = no limit). */
  collect(max: number): Document[] {
    const out: Document[] = [];
    if (this.closed) return out;
    for (const e of this.engine.changes.after(this.pos)) {
      this.pos = e.seq;
      if (!this.inScope(e)) continue;
      let docs = [this.render(e)];
      if (this.pipeline.length > 0) docs = runPipeline(deepClone(docs), this.pipeline);
      out.push(...docs);
      if (this.invalidates(e)) {
        out.push({
          _id: encodeToken(e.seq),
          operationType: 'invalidate',
          clusterTime: e.clusterTime,
          wallTime: e.wallTime,
        });
        this.invalidated = true;
        this.closed = true;
        break;
      }
      if (max > 0 && out.length >= max) break;
    }
    return out;
  }

  get token(): Document {
    return encodeToken(this.pos);
  }

  get exhausted(): boolean {
    return this.invalidated;
  }

  async next(batchSize: number, maxTimeMS: number | undefined): Promise<Batch> {
    let docs = this.collect(batchSize);
    const deadline = Date.now() + (maxTimeMS ?? DEFAULT_AWAIT_MS);
    while (docs.length === 0 && !this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      await this.engine.changes.waitForAppend(left);
      docs = this.collect(batchSize);
    }
    // As mongod does (with the label drivers check on 4.4+): the driver takes this error as resumable and resumes from its last token once
    // the server is back, instead of ending the stream as it would on a final (cursor id 0) batch.
    if (docs.length === 0 && this.shuttingDown) {
      throw new CommandError('InterruptedAtShutdown', 'interrupted at shutdown', {
        errorLabels: ['ResumableChangeStreamError'],
      });
    }
    return { docs, exhausted: this.closed, postBatchResumeToken: this.token };
  }

  close(): void {
    this.closed = true;
  }

  interruptAtShutdown(): void {
    this.shuttingDown = true;
    this.closed = true;
  }
}

export function openChangeStream(
  ctx: CommandContext,
  collName: string | null,
  spec: unknown,
  rest: Document[],
  batchSize: number | undefined,
): Document {
  if (!isPlainObject(spec))
    throw new CommandError('TypeMismatch', '$changeStream stage specification must be an object');
  for (const k of Object.keys(spec)) {
    if (!SPEC_FIELDS.includes(k))
      throw new CommandError('BadValue', `BSON field '$changeStream.${k}' is an unknown field.`);
  }
  const fullDocument = (spec.fullDocument as string | undefined) ?? 'default';
  if (fullDocument !== 'default' && fullDocument !== 'updateLookup') {
    throw new CommandError(
      'BadValue',
      `$changeStream fullDocument '${fullDocument}' is not supported by the jobd embedded server (it keeps no post-images)`,
    );
  }
  const before = (spec.fullDocumentBeforeChange as string | undefined) ?? 'off';
  if (before !== 'off')
    throw new CommandError(
      'BadValue',
      `$changeStream fullDocumentBeforeChange '${before}' is not supported by the jobd embedded server`,
    );
  for (const stage of rest) {
    const name = Object.keys(stage)[0] as string;
    if (!ALLOWED_STAGES.has(name))
      throw new CommandError('IllegalOperation', `${name} is not permitted in a $changeStream pipeline`);
  }
  const cluster = Boolean(spec.allChangesForCluster);
  if (cluster && ctx.db !== 'admin')
    throw new CommandError(
      'BadValue',
      "A $changeStream with 'allChangesForCluster:true' may only be opened on the 'admin' database",
    );
  if (!cluster && collName === null && ctx.db === 'admin') {
    throw new CommandError(
      'InvalidNamespace',
      '$changeStream may not be opened on the internal admin database',
    );
  }
  const scope: Scope = cluster ? { db: null, coll: null } : { db: ctx.db, coll: collName };
  const changes = ctx.engine.changes;
  let pos = changes.head;
  const tokenArg = spec.startAfter ?? spec.resumeAfter;
  if (tokenArg !== undefined) {
    pos = decodeToken(tokenArg);
    // Tokens are cluster times and the clock never goes back, so only a token this server (or its
    // data directory) never issued can be ahead of the head.
    if (pos > changes.head)
      throw new CommandError('InvalidResumeToken', 'The resume token refers to a point in the future');
  } else if (spec.startAtOperationTime !== undefined) {
    if (!(spec.startAtOperationTime instanceof Timestamp))
      throw new CommandError('TypeMismatch', 'startAtOperationTime must be a timestamp');
    // A time not reached yet is allowed: the stream reports the events from that time on.
    pos = changes.seqBefore(spec.startAtOperationTime);
  }
  const ns = collName === null ? `${ctx.db}.$cmd.aggregate` : `${ctx.db}.${collName}`;
  const id = ctx.cursors.allocateId();
  const cursor = new ChangeStreamCursor(id, ns, ctx.engine, scope, pos, fullDocument, rest);
  const firstBatch = cursor.collect(batchSize ?? 0);
  const closed = cursor.exhausted;
  if (!closed) ctx.cursors.add(cursor);
  return {
    cursor: { firstBatch, postBatchResumeToken: cursor.token, id: Long.fromNumber(closed ? 0 : id), ns },
    ok: 1,
  };
}
