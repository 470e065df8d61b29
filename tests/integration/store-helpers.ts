/** Shared set-up for store and daemon tests: a Store on the test's own database. */
import { openTestDb, type TestDb } from '../helpers/db.js';
import { openStore, resolveNewJob, type NewJob, type Store } from '../../src/store/index.js';
import type { EnqueueOptions } from '../../src/types.js';

export interface StoreFixture {
  t: TestDb;
  store: Store;
  close(): Promise<void>;
}

export async function openStoreFixture(label: string): Promise<StoreFixture> {
  const t = await openTestDb(label);
  const store = await openStore({ mongoUri: t.uri, database: t.dbName, appName: `jobd-test ${label}` });
  return {
    t,
    store,
    async close() {
      await store.close();
      await t.close();
    },
  };
}

export const DEFAULTS = { priority: 5, maxAttempts: 3, timeoutMs: 60_000 };

export function newJob(type: string, params: unknown, opts: EnqueueOptions, now: Date): NewJob {
  return resolveNewJob(type, params, opts, DEFAULTS, now);
}

/** The job types store tests enqueue: a claim takes only the types its worker runs. */
export const TEST_TYPES = ['noop', 'sleep', 'echo', 'fail', 'a', 'b', 'c'];
