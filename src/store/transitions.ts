/**
 * Job transitions as a change stream on the jobs collection, for the HTTP event stream. A transition
 * is an insert (a new job: its first state) or an update that advanced `seq` (every state change
 * increments it, in the same write as the state), so MongoDB's per-document order of the change
 * stream is the job's order of transitions, whichever process made them. Each change carries its
 * resume token, encoded as a string a client can hand back (Last-Event-ID) to resume right after it.
 */
import { BSON, MongoServerError, type ChangeStream, type Collection, type Document } from 'mongodb';
import { ChangeStreamsUnavailableError, ResumePointLostError, ValidationError } from '../errors.js';
import type { JobId, JobState } from '../types.js';
import { isChangeStreamUnsupported } from './watch.js';
import type { Store } from './types.js';

export interface Transition {
  jobId: JobId;
  type: string;
  /** The job's transition count after this transition (null for jobs of versions before numbering). */
  seq: number | null;
  state: JobState;
  attempt: number;
  /** The daemon that claimed it, on transitions to running. */
  worker: string | null;
  at: Date;
}

/** ChangeStreamHistoryLost, and ChangeStreamFatalError (MongoDB's answer for a token it cannot use). */
const HISTORY_LOST_CODES = new Set([286, 280]);

export function encodeResumeToken(token: unknown): string {
  return Buffer.from(BSON.serialize(token as Document)).toString('base64url');
}

export function decodeResumeToken(text: string, field: string): Document {
  try {
    if (!/^[A-Za-z0-9_-]{4,4096}$/.test(text)) throw new Error('not base64url');
    const doc = BSON.deserialize(Buffer.from(text, 'base64url'));
    if (Object.keys(doc).length === 0) throw new Error('empty');
    return doc;
  } catch {
    throw new ValidationError(
      `${field} = ${JSON.stringify(text.slice(0, 80))} is not an event id this server sent (ids are opaque strings from the id: lines of /api/events)`,
    );
  }
}

function translate(err: unknown): unknown {
  if (err instanceof MongoServerError && HISTORY_LOST_CODES.has(err.code as number))
    return new ResumePointLostError(err);
  if (isChangeStreamUnsupported(err)) return new ChangeStreamsUnavailableError(err);
  return err;
}

const FIELDS = ['type', 'state', 'seq', 'attempts', 'updatedAt', 'createdAt', 'lease'];

export interface TransitionStream {
  /** The next transition; null once closed. Throws ResumePointLostError if the history is gone. */
  next(): Promise<{ id: string; transition: Transition } | null>;
  /** The position after the last transition returned or skipped: resuming there misses nothing after it. */
  position(): string | null;
  close(): Promise<void>;
}

/**
 * What an update does not carry: the job's type (immutable) and its attempt count (changed only by
 * writes that carry it), learnt from the job's insert or read once. Bounded: the oldest are forgotten.
 */
class JobCache {
  private readonly map = new Map<JobId, { type: string; attempts: number }>();
  constructor(private readonly max: number) {}
  get(id: JobId): { type: string; attempts: number } | undefined {
    return this.map.get(id);
  }
  set(id: JobId, v: { type: string; attempts: number }): void {
    if (!this.map.has(id) && this.map.size >= this.max)
      this.map.delete(this.map.keys().next().value as JobId);
    this.map.set(id, v);
  }
}

/**
 * Opens the stream and waits until the server has accepted it, so a bad or lost resume point fails
 * here (before the caller answers its client). `resumeAfter` is an id from an earlier transition or
 * position(); `jobId` limits the stream to one job on the server.
 */
export async function openTransitionStream(
  store: Store,
  opts: { resumeAfter?: string; jobId?: JobId; field?: string } = {},
): Promise<TransitionStream> {
  const resumeAfter =
    opts.resumeAfter === undefined
      ? undefined
      : decodeResumeToken(opts.resumeAfter, opts.field ?? 'resumeAfter');
  const project: Document = { operationType: 1, documentKey: 1 };
  for (const f of FIELDS) {
    project[`fullDocument.${f}`] = 1;
    project[`updateDescription.updatedFields.${f}`] = 1;
  }
  const pipeline: Document[] = [
    {
      $match: {
        $or: [
          { operationType: 'insert' },
          { operationType: 'update', 'updateDescription.updatedFields.seq': { $exists: true } },
        ],
        ...(opts.jobId !== undefined ? { 'documentKey._id': opts.jobId } : {}),
      },
    },
    { $project: project },
  ];
  const coll = store.jobs as unknown as Collection<Document>;
  const stream: ChangeStream = coll.watch(pipeline, {
    maxAwaitTimeMS: 1000,
    ...(resumeAfter ? { resumeAfter } : {}),
  });
  const initial = stream.resumeToken;
  let first: Document | null;
  try {
    // Sends the opening aggregate: a lost resume point or a server without change streams fails now.
    first = await stream.tryNext();
  } catch (err) {
    await stream.close().catch(() => {});
    throw translate(err);
  }
  const jobs = new JobCache(50_000);
  let closed = false;
  /** While a change is being turned into a transition: the position before it. */
  let held: { v: unknown } | null = null;

  async function transitionOf(c: Document): Promise<Transition | null> {
    const id = c.documentKey?._id as JobId;
    const doc = (c.operationType === 'insert' ? c.fullDocument : c.updateDescription?.updatedFields) ?? {};
    let known = jobs.get(id);
    let state = doc.state as JobState | undefined;
    if (c.operationType === 'insert') known = { type: doc.type as string, attempts: 0 };
    if (known === undefined || state === undefined) {
      // Not seen yet on this stream (or a transition that kept the state): read what is missing.
      const cur = await store.jobs.findOne({ _id: id }, { projection: { type: 1, state: 1, attempts: 1 } });
      if (!cur) return null;
      known ??= { type: cur.type, attempts: cur.attempts };
      state ??= cur.state;
    }
    const attempts = typeof doc.attempts === 'number' ? doc.attempts : known.attempts;
    jobs.set(id, { type: known.type, attempts });
    const lease = doc.lease as { owner?: string } | null | undefined;
    return {
      jobId: id,
      type: known.type,
      seq: typeof doc.seq === 'number' ? doc.seq : null,
      state,
      attempt: attempts,
      worker: state === 'running' ? (lease?.owner ?? null) : null,
      at: (doc.updatedAt ?? doc.createdAt ?? new Date()) as Date,
    };
  }

  return {
    async next() {
      for (;;) {
        if (closed) return null;
        let c: Document | null;
        const before = first ? initial : stream.resumeToken;
        try {
          c = first ?? (await stream.next());
          first = null;
        } catch (err) {
          if (closed || stream.closed) return null;
          throw translate(err);
        }
        if (c === null) return null;
        // The driver's resume token already points past this change: until the caller has it, the
        // position stays before it.
        held = { v: before };
        const t = await transitionOf(c).finally(() => (held = null));
        // A job deleted right after its transition: nothing to show about it.
        if (t) return { id: encodeResumeToken(c._id), transition: t };
      }
    },
    position() {
      const t = held ? held.v : stream.resumeToken;
      return t ? encodeResumeToken(t) : null;
    },
    async close() {
      closed = true;
      await stream.close().catch(() => {});
    },
  };
}
