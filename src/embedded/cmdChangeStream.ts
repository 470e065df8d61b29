/**
 * Change streams: aggregate with a leading $changeStream opens a cursor over the change log.
 * getMore returns the events after the cursor's position, waiting up to maxTimeMS (the driver's
 * maxAwaitTimeMS, 1000 by default) for one to arrive without holding up other connections.
 */
import { Long, Timestamp, type Document } from 'bson';
import { CommandError } from './errors.js';
import { isPlainObject } from './bsonOrder.js';
import {
  EXPANDED_EVENTS,
  decodeToken,
  encodeToken,
  eventClusterTime,
  eventToken,
  eventUpdateDescription,
  eventWallTime,
  type ChangeEvent,
} from './changeLog.js';
import { isView } from './views.js';
import type { Batch, Cursor } from './cursor.js';
import type { Engine } from './engine.js';
import { compileEventPipeline, type EventPipeline } from './changeStreamPipeline.js';
import { compilePrefilter, type Prefilter } from './changeStreamPrefilter.js';
import type { CommandContext } from './commandContext.js';
import { MAX_BATCH_BYTES, bsonSize } from './limits.js';

const SPEC_FIELDS = [
  'fullDocument',
  'fullDocumentBeforeChange',
  'resumeAfter',
  'startAfter',
  'startAtOperationTime',
  'allChangesForCluster',
  'showExpandedEvents',
];
const FULL_DOCUMENT = ['default', 'updateLookup', 'whenAvailable', 'required'];
const FULL_DOCUMENT_BEFORE_CHANGE = ['off', 'whenAvailable', 'required'];
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
/** As MongoDB labels the errors a driver must not resume after. */
const NON_RESUMABLE = { errorLabels: ['NonResumableChangeStreamError'] };

interface StreamOptions {
  fullDocument: string;
  fullDocumentBeforeChange: string;
  showExpandedEvents: boolean;
  pipeline: EventPipeline;
  /** Changes the pipeline's leading $match certainly drops: those are not rendered at all. */
  prefilter?: Prefilter | undefined;
}

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
    private readonly options: StreamOptions,
  ) {}

  private inScope(e: ChangeEvent): boolean {
    if (EXPANDED_EVENTS.has(e.operationType) && !this.options.showExpandedEvents) return false;
    const renamedInto = (db: string, coll?: string): boolean =>
      e.operationType === 'rename' && e.to?.db === db && (coll === undefined || e.to.coll === coll);
    const { db, coll } = this.scope;
    if (db === null) return !INTERNAL_DBS.has(e.db);
    if (coll === null) return e.db === db || renamedInto(db);
    // A single-collection stream does not watch system.views, where MongoDB records view changes.
    if (e.view || e.operationType === 'dropDatabase') return false;
    return (e.db === db && e.coll === coll) || renamedInto(db, coll);
  }

  /** Called for events in scope: a collection stream ends when its collection is dropped or renamed (away or over). */
  private invalidates(e: ChangeEvent): boolean {
    if (this.scope.db === null) return false;
    if (this.scope.coll === null) return e.operationType === 'dropDatabase';
    return e.operationType === 'drop' || e.operationType === 'rename';
  }

  private render(e: ChangeEvent): Document {
    const expanded = this.options.showExpandedEvents;
    const out: Document = {
      _id: eventToken(e),
      operationType: e.operationType,
      clusterTime: eventClusterTime(e),
    };
    if (expanded && e.uuid) out.collectionUUID = e.uuid;
    out.wallTime = eventWallTime(e);
    if (e.operationType === 'insert' || e.operationType === 'replace') out.fullDocument = e.fullDocument;
    if (e.operationType === 'update') {
      const post = this.postImage(e);
      if (post !== undefined) out.fullDocument = post;
    }
    out.ns = e.coll === undefined ? { db: e.db } : { db: e.db, coll: e.coll };
    if (e.to) out.to = e.to;
    if (e.documentKey) out.documentKey = e.documentKey;
    if (expanded && e.description) out.operationDescription = e.description;
    if (e.operationType === 'update' && e.before && e.fullDocument)
      out.updateDescription = eventUpdateDescription(e, expanded);
    if (expanded && e.stateBeforeChange) out.stateBeforeChange = e.stateBeforeChange;
    if (
      this.options.fullDocumentBeforeChange !== 'off' &&
      (e.operationType === 'update' || e.operationType === 'replace' || e.operationType === 'delete')
    )
      out.fullDocumentBeforeChange = this.preImage(e);
    return out;
  }

  /** An update event's fullDocument under the stream's fullDocument mode (undefined: none). */
  private postImage(e: ChangeEvent): Document | null | undefined {
    switch (this.options.fullDocument) {
      case 'updateLookup': {
        // The document as it is now, if its collection is still the one the event was about.
        const coll = e.coll === undefined ? undefined : this.engine.getCollection(e.db, e.coll);
        if (!coll || (e.uuid && !Buffer.from(coll.uuid.buffer).equals(e.uuid.buffer))) return null;
        return coll.get(e.documentKey?._id) ?? null;
      }
      case 'whenAvailable':
        return e.images && e.fullDocument ? e.fullDocument : null;
      case 'required':
        if (e.images && e.fullDocument) return e.fullDocument;
        throw new CommandError(
          'NoMatchingDocument',
          `Change stream was configured to require a post-image for all update events, but the post-image was not available for event: ${describeEvent(e)}`,
        );
      default:
        return undefined;
    }
  }

  private preImage(e: ChangeEvent): Document | null {
    if (e.images && e.before) return e.before;
    if (this.options.fullDocumentBeforeChange === 'whenAvailable') return null;
    throw new CommandError(
      'NoMatchingDocument',
      `Change stream was configured to require a pre-image for all update, delete and replace events, but the pre-image was not available for event: ${describeEvent(e)}`,
    );
  }

  /**
   * The stream's pipeline over one event. MongoDB refuses (280, at the batch that would return it) any
   * result whose _id is no longer the event's resume token: the stream could not be resumed after it.
   */
  private transform(event: Document): Document[] {
    const token = event._id as Document;
    const docs = this.options.pipeline(event);
    if (docs.length === 1 && docs[0] === event) return docs;
    for (const doc of docs) {
      const id = doc._id as unknown;
      const intact = isPlainObject(id) && Object.keys(id).length === 1 && id._data === token._data;
      if (!intact)
        throw new CommandError(
          'ChangeStreamFatalError',
          `Encountered an event whose _id field, which contains the resume token, was modified by the pipeline. Modifying the _id field of an event makes it impossible to resume the stream from that point. Only transformations that retain the unmodified _id field are allowed. Expected: { _id: ${JSON.stringify(token)} } but found: ${id === undefined ? '{}' : `{ _id: ${JSON.stringify(id)} }`}`,
          NON_RESUMABLE,
        );
    }
    return docs;
  }

  /**
   * Whether an appended event can give this stream something to answer: one out of its scope, or one
   * its $match certainly drops (and that does not end it), is passed over until the next batch is
   * collected, so a waiting getMore is not woken for it (a daemon's claim watcher sat through every
   * claim, completion and events insert). Either way collect() moves the position past it.
   */
  private readonly wants = (e: ChangeEvent): boolean =>
    this.closed || (this.inScope(e) && (!this.options.prefilter?.(e) || this.invalidates(e)));

  /** Events available now, up to `max` (0 = no limit) and 16 MiB (but at least one event). */
  collect(max: number): Document[] {
    const out: Document[] = [];
    if (this.closed) return out;
    let bytes = 0;
    for (const e of this.engine.changes.after(this.pos)) {
      if (this.inScope(e)) {
        if (!this.options.prefilter?.(e)) {
          const docs = this.transform(this.render(e));
          for (const d of docs) bytes += bsonSize(d);
          // The event stays for the next batch: the position only moves past events that were sent.
          if (out.length > 0 && bytes > MAX_BATCH_BYTES) break;
          out.push(...docs);
        }
        if (this.invalidates(e)) {
          // The invalidate event goes through the pipeline like any other; the stream ends either way.
          out.push(
            ...this.transform({
              _id: eventToken(e),
              operationType: 'invalidate',
              clusterTime: eventClusterTime(e),
              wallTime: eventWallTime(e),
            }),
          );
          this.pos = e.seq;
          this.invalidated = true;
          this.closed = true;
          break;
        }
      }
      this.pos = e.seq;
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
      await this.engine.changes.waitForAppend(left, this.wants);
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
      throw new CommandError('Location40415', `BSON field '$changeStream.${k}' is an unknown field.`);
  }
  const fullDocument = enumOption(spec, 'fullDocument', FULL_DOCUMENT, 'default');
  const fullDocumentBeforeChange = enumOption(
    spec,
    'fullDocumentBeforeChange',
    FULL_DOCUMENT_BEFORE_CHANGE,
    'off',
  );
  for (const k of ['showExpandedEvents', 'allChangesForCluster']) {
    if (spec[k] !== undefined && typeof spec[k] !== 'boolean')
      throw new CommandError(
        'TypeMismatch',
        `BSON field '$changeStream.${k}' is the wrong type '${typeof spec[k]}', expected type 'bool'`,
      );
  }
  for (const stage of rest) {
    const name = Object.keys(stage)[0] as string;
    if (!ALLOWED_STAGES.has(name))
      throw new CommandError('IllegalOperation', `${name} is not permitted in a $changeStream pipeline`);
  }
  if (collName !== null && isView(ctx.engine.getCollection(ctx.db, collName)))
    throw new CommandError(
      'CommandNotSupportedOnView',
      `Namespace ${ctx.db}.${collName} is a view, not a collection`,
    );
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
  const pipeline = compileEventPipeline(rest);
  const first = rest[0];
  // Rendering an event may fail (a required image that is missing) before the $match would drop it:
  // such a stream renders every event, so that it fails just as before.
  const prefilter =
    first && '$match' in first && fullDocument !== 'required' && fullDocumentBeforeChange !== 'required'
      ? compilePrefilter(first.$match)
      : undefined;
  const cursor = new ChangeStreamCursor(id, ns, ctx.engine, scope, pos, {
    fullDocument,
    fullDocumentBeforeChange,
    showExpandedEvents: spec.showExpandedEvents === true,
    pipeline,
    prefilter,
  });
  const firstBatch = cursor.collect(batchSize ?? 0);
  const closed = cursor.exhausted;
  if (!closed) ctx.cursors.add(cursor);
  return {
    cursor: { firstBatch, postBatchResumeToken: cursor.token, id: Long.fromNumber(closed ? 0 : id), ns },
    ok: 1,
  };
}

/** A string option of the $changeStream stage that takes one of `allowed`. */
function enumOption(spec: Document, field: string, allowed: string[], fallback: string): string {
  const value = spec[field] as unknown;
  if (value === undefined) return fallback;
  if (typeof value !== 'string')
    throw new CommandError(
      'TypeMismatch',
      `BSON field '$changeStream.${field}' is the wrong type '${typeof value}', expected type 'string'`,
    );
  if (!allowed.includes(value))
    throw new CommandError(
      'BadValue',
      `Enumeration value '${value}' for field '$changeStream.${field}' is not a valid value.`,
    );
  return value;
}

/** An event named in an error message: its type, namespace and document key. */
function describeEvent(e: ChangeEvent): string {
  const key = JSON.stringify(e.documentKey ?? {});
  return `{ operationType: "${e.operationType}", ns: "${e.db}.${e.coll ?? ''}", documentKey: ${key} }`;
}
