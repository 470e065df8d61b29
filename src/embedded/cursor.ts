/**
 * Open cursors: result sets handed out in batches by getMore, and change streams that wait
 * for the next event. Idle cursors are reaped after ten minutes, as in MongoDB.
 */
import { Long, type Document } from 'bson';
import type { CommandContext } from './commandContext.js';
import { CommandError } from './errors.js';
import { MAX_BATCH_BYTES, bsonSize } from './limits.js';
const IDLE_MS = 10 * 60 * 1000;

export interface Batch {
  docs: Document[];
  exhausted: boolean;
  postBatchResumeToken?: Document;
}

export interface Cursor {
  id: number;
  ns: string;
  lastUsed: number;
  busy: boolean;
  next(batchSize: number, maxTimeMS: number | undefined): Batch | Promise<Batch>;
  close?(): void;
  /** Ends a waiting getMore because the server is shutting down (instead of close()). */
  interruptAtShutdown?(): void;
}

/**
 * Takes up to `batchSize` documents (0 = no count limit) as MongoDB fills a batch: the first document
 * always, then each next one while the batch stays within 16 MiB, so a reply fits in a message.
 */
export function takeBatch(docs: Document[], start: number, batchSize: number): Document[] {
  const max = batchSize > 0 ? Math.min(batchSize, docs.length - start) : docs.length - start;
  if (max <= 0) return [];
  const first = docs[start] as Document;
  if (max === 1) return [first];
  const out: Document[] = [first];
  let bytes = bsonSize(first);
  for (let i = 1; i < max; i++) {
    const doc = docs[start + i] as Document;
    bytes += bsonSize(doc);
    if (bytes > MAX_BATCH_BYTES) break;
    out.push(doc);
  }
  return out;
}

export class ArrayCursor implements Cursor {
  lastUsed = Date.now();
  busy = false;
  private pos = 0;

  constructor(
    readonly id: number,
    readonly ns: string,
    private readonly docs: Document[],
  ) {}

  next(batchSize: number): Batch {
    const docs = takeBatch(this.docs, this.pos, batchSize);
    this.pos += docs.length;
    return { docs, exhausted: this.pos >= this.docs.length };
  }

  /** The first batch, taken at creation. */
  static first(docs: Document[], batchSize: number): { docs: Document[]; rest: Document[] } {
    const first = takeBatch(docs, 0, batchSize);
    return { docs: first, rest: docs.slice(first.length) };
  }
}

export class CursorManager {
  private readonly cursors = new Map<number, Cursor>();
  /** Cursors opened with noCursorTimeout: never reaped, only killed or exhausted. */
  private readonly pinned = new Set<number>();
  private nextId = Math.floor(Math.random() * 1_000_000) * 1000 + 1;
  private readonly reaper: NodeJS.Timeout;

  constructor() {
    this.reaper = setInterval(() => this.reap(), 60_000);
    this.reaper.unref();
  }

  allocateId(): number {
    return this.nextId++;
  }

  add(cursor: Cursor): void {
    this.cursors.set(cursor.id, cursor);
  }

  get(id: number, ns: string): Cursor {
    const c = this.cursors.get(id);
    if (!c) throw new CommandError('CursorNotFound', `cursor id ${id} not found`);
    if (c.ns !== ns)
      throw new CommandError(
        'Unauthorized',
        `Requested getMore on namespace '${ns}', but cursor belongs to a different namespace ${c.ns}`,
      );
    c.lastUsed = Date.now();
    return c;
  }

  /** noCursorTimeout: the cursor stays until it is exhausted or killed. */
  keepAlive(id: number): void {
    if (this.cursors.has(id)) this.pinned.add(id);
  }

  kill(id: number): boolean {
    const c = this.cursors.get(id);
    if (!c) return false;
    this.cursors.delete(id);
    this.pinned.delete(id);
    c.close?.();
    return true;
  }

  private reap(): void {
    const now = Date.now();
    for (const [id, c] of this.cursors)
      if (!c.busy && !this.pinned.has(id) && now - c.lastUsed > IDLE_MS) this.kill(id);
  }

  /** Ends the cursors a getMore is waiting on (awaiting change streams), so those getMores answer now. */
  closeWaiting(): void {
    for (const [id, c] of [...this.cursors]) {
      if (!c.busy || !c.close) continue;
      this.cursors.delete(id);
      if (c.interruptAtShutdown) c.interruptAtShutdown();
      else c.close();
    }
  }

  closeAll(): void {
    clearInterval(this.reaper);
    for (const id of [...this.cursors.keys()]) this.kill(id);
  }
}

/** A cursor reply with the first batch; the rest stays on the server under a cursor id. */
export function openCursor(
  ctx: Pick<CommandContext, 'cursors'>,
  ns: string,
  docs: Document[],
  batchSize: number | undefined,
  single = false,
): Document {
  // batchSize 0 asks for an empty first batch: the cursor is opened and everything comes by getMore.
  const { docs: first, rest } =
    batchSize === 0 ? { docs: [], rest: docs } : ArrayCursor.first(docs, batchSize ?? 101);
  let id = 0;
  if (rest.length > 0 && !single) {
    id = ctx.cursors.allocateId();
    ctx.cursors.add(new ArrayCursor(id, ns, rest));
  }
  return { cursor: { firstBatch: first, id: Long.fromNumber(id), ns }, ok: 1 };
}
