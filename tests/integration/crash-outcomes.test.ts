/**
 * Outcomes a daemon cannot store fail their own attempt, with a clear error, and never hold up the
 * other outcomes: a circular result, a BigInt, a result that would take the job past MongoDB's 16 MiB,
 * and an outcome the database itself refuses. Real daemon processes; the daemon keeps running.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import { openTestDb, type TestDb } from '../helpers/db.js';
import {
  crashFixture,
  killAllDaemons,
  startDaemonProcess,
  writeDaemonSettings,
  type DaemonProcess,
} from '../helpers/daemonProcess.js';
import { waitForCount, waitForDoc } from '../helpers/waitFor.js';

describe('crash: outcomes that cannot be stored', () => {
  let t: TestDb;
  let client: JobdClient;
  let d: DaemonProcess;
  beforeEach(async () => {
    t = await openTestDb('crash_outcomes');
    client = await JobdClient.connect({ mongoUri: t.uri, database: t.dbName });
    d = await startDaemonProcess(
      writeDaemonSettings({
        mongoUri: t.uri,
        database: t.dbName,
        // Leases long enough that moving 10 MB documents on a loaded machine never looks like a death.
        worker: { concurrency: 4, leaseMs: 15_000 },
        jobTypes: { outcome: { handler: crashFixture('outcome.mjs'), mode: 'pooled' } },
      }),
    );
  });
  afterEach(async () => {
    await killAllDaemons();
    await client.close();
    await t.close();
  });

  /** Enqueues `n` echo jobs and waits until all completed: the daemon still settles outcomes. */
  async function stillCompletes(n: number): Promise<void> {
    const ids = (
      await client.enqueueMany(Array.from({ length: n }, (_, i) => ({ type: 'echo', params: { i } })))
    ).map((r) => r.job._id);
    await waitForCount(client.store.jobs, { _id: { $in: ids }, state: 'completed' }, n, {
      what: `${n} echo jobs completed after the bad outcome`,
    });
  }

  it('a circular result fails that job alone, at once, saying where; the next jobs complete', async () => {
    const { job } = await client.enqueue('outcome', { kind: 'circular' }, { maxAttempts: 3 });
    const failed = await waitForDoc(
      client.store.jobs,
      { _id: job._id, state: 'failed' },
      { what: 'the job failed' },
    );
    expect(failed).toMatchObject({
      attempts: 1,
      lastError: {
        name: 'UnencodableResultError',
        code: 'JOBD_UNENCODABLE_RESULT',
        message: 'result.inner.back refers back to result (a circular structure)',
      },
    });
    await stillCompletes(20);
    expect(d.alive).toBe(true);
    expect((await d.stop()).code).toBe(0);
  });

  it('a BigInt result is refused, never stored as a different number', async () => {
    const { job } = await client.enqueue('outcome', { kind: 'bigint' });
    const failed = await waitForDoc(
      client.store.jobs,
      { _id: job._id, state: 'failed' },
      { what: 'the job failed' },
    );
    expect(failed.result).toBeUndefined();
    expect(failed.lastError).toMatchObject({ code: 'JOBD_UNENCODABLE_RESULT', attempt: 1 });
    expect(failed.lastError!.message).toBe(
      'result.huge is a BigInt (1208925819614629174706183n); MongoDB has no integer of arbitrary size: store it as a string',
    );
    await stillCompletes(5);
  });

  it('a 10 MB echo of 10 MB params (a 20 MB job document) fails with the sizes; the daemon carries on', async () => {
    const big = 'x'.repeat(10 * 1024 * 1024);
    const { job } = await client.enqueue('echo', { big });
    const failed = await waitForDoc(
      client.store.jobs,
      { _id: job._id, state: 'failed' },
      { what: 'the job failed', timeoutMs: 60_000 },
    );
    // One attempt, not retried: the outcome is deterministic.
    expect(failed.errors.map((e) => e.code)).toEqual(['JOBD_UNENCODABLE_RESULT']);
    expect(failed.lastError).toMatchObject({ code: 'JOBD_UNENCODABLE_RESULT', attempt: 1 });
    expect(failed.lastError!.message).toMatch(
      /^result takes 10\.0 MiB as BSON; with the job's params and history the job document would take 20\.0 MiB, over MongoDB's 16\.0 MiB document limit$/,
    );
    await stillCompletes(5);
    expect(d.alive).toBe(true);
  });

  it('an outcome the database refuses fails that attempt alone; the outcomes batched with it land', async () => {
    // The database refuses any job whose result carries a "poison" field (a collection validator).
    await t.db.command({ collMod: 'jobs', validator: { 'result.poison': { $exists: false } } });
    const poison = await client.enqueue('echo', { poison: true });
    const others = (
      await client.enqueueMany(Array.from({ length: 30 }, (_, i) => ({ type: 'echo', params: { i } })))
    ).map((r) => r.job._id);
    const failed = await waitForDoc(
      client.store.jobs,
      { _id: poison.job._id, state: 'failed' },
      { what: 'the poisoned job failed' },
    );
    expect(failed).toMatchObject({
      attempts: 1,
      lastError: { name: 'OutcomeRefusedError', code: 'JOBD_OUTCOME_REFUSED' },
    });
    expect(failed.lastError!.message).toMatch(
      /^the database refused to store this attempt's outcome: .*validation/i,
    );
    await waitForCount(client.store.jobs, { _id: { $in: others }, state: 'completed' }, others.length, {
      what: 'the other jobs completed',
    });
    await d.waitForLog(
      (l) => l.msg.startsWith('the database refused an outcome') && l.jobId === poison.job._id,
    );
    expect(d.alive).toBe(true);
  });
});
