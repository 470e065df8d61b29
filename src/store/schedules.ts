/**
 * The `schedules` collection and the jobs schedules create. Exactly one job per schedule and fire
 * time, whatever the number of daemons: each fire's job carries fireKey `<name>@<ISO time>` under a
 * unique index (a second insert of the same fire is refused by the database), and a schedule's
 * nextFireAt only moves forward by a compare-and-set on its old value, after the jobs are written
 * (a daemon that dies in between leaves the fire due: the next one re-creates the missing jobs, and
 * the index refuses the ones that exist).
 */
import { MongoBulkWriteError, MongoServerError, type Collection, type Document } from 'mongodb';
import { NotFoundError, ValidationError } from '../errors.js';
import { firstFireAfter, timingKey } from '../schedules/spec.js';
import type { UpSpan } from '../schedules/plan.js';
import type { JobId, ScheduleDefinition, ScheduleDoc } from '../types.js';
import { appendEvents, event } from './events.js';
import { newJobDoc } from './enqueue.js';
import type { NewJob } from './newJob.js';
import type { Store } from './types.js';
import { watchCollection, type Watcher, type WatchHandlers } from './watch.js';

export function fireKeyOf(name: string, at: Date): string {
  return `${name}@${at.toISOString()}`;
}

function definitionOf(d: ScheduleDefinition): ScheduleDefinition {
  return {
    ...(d.cron !== undefined ? { cron: d.cron } : {}),
    ...(d.everyMs !== undefined ? { everyMs: d.everyMs } : {}),
    ...(d.timezone !== undefined ? { timezone: d.timezone } : {}),
    type: d.type,
    params: d.params,
    ...(d.priority !== undefined ? { priority: d.priority } : {}),
    catchUp: d.catchUp,
    catchUpMax: d.catchUpMax,
  };
}

function sameDefinition(a: ScheduleDefinition, b: ScheduleDefinition): boolean {
  return JSON.stringify(definitionOf(a)) === JSON.stringify(definitionOf(b));
}

/** Add a schedule at run time; a schedule of that name must not exist. */
export async function addSchedule(
  store: Store,
  name: string,
  def: ScheduleDefinition,
  now: Date,
): Promise<ScheduleDoc> {
  const doc: ScheduleDoc = {
    _id: name,
    ...definitionOf(def),
    paused: false,
    nextFireAt: firstFireAfter(def, now),
    lastFireAt: null,
    source: 'runtime',
    createdAt: now,
    updatedAt: now,
  };
  try {
    await store.schedules.insertOne(doc);
  } catch (err) {
    if (err instanceof MongoServerError && err.code === 11000) {
      throw new ValidationError(
        `schedule "${name}" exists already; remove it first (jobctl schedule remove ${name}) to define it anew`,
      );
    }
    throw err;
  }
  return doc;
}

/**
 * Settings schedules, at daemon start: a new one is inserted; an existing one takes the settings'
 * definition and keeps its runtime state (paused, nextFireAt, lastFireAt) unless its timing changed,
 * which restarts its series from now. Schedules no longer in the settings are left alone (another
 * daemon may still have them during a rolling change); `jobctl schedule remove` deletes one.
 */
export async function syncSettingsSchedules(
  store: Store,
  defs: Record<string, ScheduleDefinition>,
  now: Date,
): Promise<{ added: string[]; updated: string[] }> {
  const added: string[] = [];
  const updated: string[] = [];
  for (const [name, def] of Object.entries(defs)) {
    const have = await store.schedules.findOne({ _id: name });
    if (!have) {
      const res = await store.schedules.updateOne(
        { _id: name },
        {
          $setOnInsert: {
            ...definitionOf(def),
            paused: false,
            nextFireAt: firstFireAfter(def, now),
            lastFireAt: null,
            source: 'settings',
            createdAt: now,
            updatedAt: now,
          },
        },
        { upsert: true },
      );
      if (res.upsertedCount === 1) added.push(name);
      continue;
    }
    if (sameDefinition(have, def) && have.source === 'settings') continue;
    const timingChanged = timingKey(have) !== timingKey(def);
    const unset: Record<string, ''> = {};
    for (const k of ['cron', 'everyMs', 'timezone', 'priority'] as const)
      if (def[k] === undefined) unset[k] = '';
    await store.schedules.updateOne(
      // The compare-and-set keeps a concurrent fire's advance from being overwritten by a stale read.
      { _id: name, nextFireAt: have.nextFireAt },
      {
        $set: {
          ...definitionOf(def),
          source: 'settings',
          updatedAt: now,
          ...(timingChanged ? { nextFireAt: firstFireAfter(def, now) } : {}),
        },
        ...(Object.keys(unset).length ? { $unset: unset } : {}),
      },
    );
    updated.push(name);
  }
  return { added, updated };
}

export function getSchedule(store: Store, name: string): Promise<ScheduleDoc | null> {
  return store.schedules.findOne({ _id: name });
}

export function listSchedules(store: Store): Promise<ScheduleDoc[]> {
  return store.schedules.find({}, { sort: { _id: 1 } }).toArray();
}

function notFound(name: string): NotFoundError {
  return new NotFoundError(`schedule "${name}" not found`);
}

export async function pauseSchedule(store: Store, name: string, now: Date): Promise<ScheduleDoc> {
  const doc = await store.schedules.findOneAndUpdate(
    { _id: name },
    { $set: { paused: true, updatedAt: now } },
    { returnDocument: 'after' },
  );
  if (!doc) throw notFound(name);
  return doc;
}

/** Resume: fire times that passed while it was paused are not made up; it fires next after now. */
export async function resumeSchedule(store: Store, name: string, now: Date): Promise<ScheduleDoc> {
  const have = await store.schedules.findOne({ _id: name });
  if (!have) throw notFound(name);
  if (!have.paused) return have;
  const doc = await store.schedules.findOneAndUpdate(
    { _id: name, paused: true },
    { $set: { paused: false, nextFireAt: firstFireAfter(have, now), updatedAt: now } },
    { returnDocument: 'after' },
  );
  return doc ?? (await store.schedules.findOne({ _id: name })) ?? have;
}

export async function removeSchedule(store: Store, name: string): Promise<void> {
  const res = await store.schedules.deleteOne({ _id: name });
  if (res.deletedCount !== 1) throw notFound(name);
}

/** Schedules whose next fire time has come, oldest first. */
export function dueSchedules(store: Store, now: Date, limit: number): Promise<ScheduleDoc[]> {
  return store.schedules
    .find({ paused: false, nextFireAt: { $lte: now } }, { sort: { nextFireAt: 1 }, limit })
    .toArray();
}

/** The earliest next fire time of any active schedule, or null when there is none. */
export async function earliestFireAt(store: Store): Promise<Date | null> {
  const doc = await store.schedules.findOne(
    { paused: false },
    { sort: { nextFireAt: 1 }, projection: { nextFireAt: 1 } },
  );
  return doc?.nextFireAt ?? null;
}

/**
 * Wake on schedule writes that may move the earliest fire time: an insert (jobctl schedule add, a
 * settings schedule), an update (pause, resume, a settings edit, a fire) or a replace. A delete only
 * makes a fire time go away, which the scheduler's next pass finds anyway. The caller re-reads.
 */
export function watchSchedules(store: Store, h: WatchHandlers<null>): Watcher {
  return watchCollection(
    store,
    store.schedules as unknown as Collection<Document>,
    [
      { $match: { operationType: { $in: ['insert', 'update', 'replace'] } } },
      { $project: { operationType: 1 } },
    ],
    () => null,
    h,
  );
}

/**
 * When daemons were up since `from`: each daemon from its start to its last heartbeat, or to now when
 * it is alive (a heartbeat within `aliveWithinMs`). A fire time outside every span was missed.
 */
export async function upSpans(
  store: Store,
  opts: { from: Date; now: Date; aliveWithinMs: number },
): Promise<UpSpan[]> {
  const now = opts.now.getTime();
  // A live daemon's last heartbeat may be older than `from`: its span still runs to now.
  const since = new Date(Math.min(opts.from.getTime(), now - opts.aliveWithinMs));
  const docs = await store.workers
    .find({ heartbeatAt: { $gte: since } }, { projection: { startedAt: 1, heartbeatAt: 1, state: 1 } })
    .toArray();
  return docs.map((w) => {
    const alive = w.state !== 'stopped' && now - w.heartbeatAt.getTime() <= opts.aliveWithinMs;
    return { from: w.startedAt.getTime(), to: alive ? now : w.heartbeatAt.getTime() };
  });
}

export interface Fire {
  at: Date;
  catchUp: boolean;
}

export interface FiredJob extends Fire {
  jobId: JobId;
  fireKey: string;
}

/**
 * Create one job per fire (a fire whose job exists already is skipped: another daemon made it), then
 * move nextFireAt from `expected` to `next`. advanced false: another daemon moved it first.
 */
export async function fireSchedule(
  store: Store,
  o: {
    name: string;
    expected: Date;
    next: Date;
    fires: Fire[];
    job: (fire: Fire) => NewJob;
    now: Date;
    by: string;
  },
): Promise<{ created: FiredJob[]; advanced: boolean }> {
  const docs = o.fires.map((f) =>
    newJobDoc({ ...o.job(f), scheduleId: o.name, fireKey: fireKeyOf(o.name, f.at) }, o.now),
  );
  const clashed = new Set<number>();
  if (docs.length) {
    try {
      await store.jobs.insertMany(docs, { ordered: false });
    } catch (err) {
      if (!(err instanceof MongoBulkWriteError)) throw err;
      const errors = Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors];
      for (const we of errors) {
        if (we.code !== 11000) throw err;
        clashed.add(we.index);
      }
    }
  }
  const created: FiredJob[] = [];
  docs.forEach((d, i) => {
    if (!clashed.has(i)) created.push({ ...o.fires[i]!, jobId: d._id, fireKey: d.fireKey! });
  });
  await appendEvents(
    store,
    created.map((c) =>
      event(
        c.jobId,
        null,
        'queued',
        o.now,
        0,
        o.by,
        `enqueued by schedule ${o.name} for its fire time ${c.at.toISOString()}${c.catchUp ? ' (catch-up: no daemon was up then)' : ''}`,
        1,
      ),
    ),
  );
  const last = o.fires[o.fires.length - 1];
  const res = await store.schedules.updateOne(
    { _id: o.name, nextFireAt: o.expected },
    { $set: { nextFireAt: o.next, updatedAt: o.now, ...(last ? { lastFireAt: last.at } : {}) } },
  );
  return { created, advanced: res.modifiedCount === 1 };
}

/** `jobctl schedule trigger`: one job now, outside the schedule's series (no fireKey). */
export async function triggerSchedule(
  store: Store,
  name: string,
  job: (def: ScheduleDoc) => NewJob,
  now: Date,
  by: string,
): Promise<JobId> {
  const sched = await store.schedules.findOne({ _id: name });
  if (!sched) throw notFound(name);
  const doc = newJobDoc({ ...job(sched), scheduleId: name }, now);
  await store.jobs.insertOne(doc);
  await appendEvents(store, [
    event(doc._id, null, doc.state, now, 0, by, `triggered from schedule ${name}`, 1),
  ]);
  return doc._id;
}
