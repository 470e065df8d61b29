/**
 * What an operator or an application does with schedules: the functions jobctl's `schedule` commands
 * and JobdClient's schedule methods both call, so the two are peers. Validation happens here, before
 * anything is written.
 */
import {
  addSchedule as storeAdd,
  getSchedule as storeGet,
  listSchedules as storeList,
  pauseSchedule as storePause,
  removeSchedule as storeRemove,
  resolveNewJob,
  resumeSchedule as storeResume,
  triggerSchedule as storeTrigger,
  type JobDefaults,
  type Store,
} from '../store/index.js';
import { NotFoundError } from '../errors.js';
import type { JobId, ScheduleDoc } from '../types.js';
import { checkScheduleName, validateSchedule, type ScheduleInput } from './spec.js';

/** A schedule as shown: its document, the next fire time included. */
export type ScheduleView = ScheduleDoc;

export async function addSchedule(
  store: Store,
  name: string,
  input: ScheduleInput,
  o: { now: Date; defaultsFor(type: string): JobDefaults },
): Promise<ScheduleView> {
  checkScheduleName(name);
  const def = validateSchedule(input);
  // The job it will create must be valid too (params storable, priority in range): checked now.
  resolveNewJob(
    def.type,
    def.params,
    def.priority !== undefined ? { priority: def.priority } : {},
    o.defaultsFor(def.type),
    o.now,
  );
  return storeAdd(store, name, def, o.now);
}

export function listSchedules(store: Store): Promise<ScheduleView[]> {
  return storeList(store);
}

export async function showSchedule(store: Store, name: string): Promise<ScheduleView> {
  const s = await storeGet(store, name);
  if (!s) throw new NotFoundError(`schedule "${name}" not found`);
  return s;
}

export function pauseSchedule(store: Store, name: string, now: Date): Promise<ScheduleView> {
  return storePause(store, name, now);
}

export function resumeSchedule(store: Store, name: string, now: Date): Promise<ScheduleView> {
  return storeResume(store, name, now);
}

export function removeSchedule(store: Store, name: string): Promise<void> {
  return storeRemove(store, name);
}

/** Enqueue the schedule's job now, outside its series; returns the job's id. */
export function triggerSchedule(
  store: Store,
  name: string,
  o: { now: Date; by: string; defaultsFor(type: string): JobDefaults },
): Promise<JobId> {
  return storeTrigger(
    store,
    name,
    (s) =>
      resolveNewJob(
        s.type,
        s.params,
        s.priority !== undefined ? { priority: s.priority } : {},
        o.defaultsFor(s.type),
        o.now,
      ),
    o.now,
    o.by,
  );
}
