/**
 * A daemon claims only the job types it runs. In a mixed fleet each job goes to a daemon that knows
 * its type; a type no live daemon runs waits in queued (jobctl status says so) until one that knows
 * it starts, as in a rolling deploy. Real daemon processes on one database.
 */
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import { openTestDb, type TestDb } from '../helpers/db.js';
import {
  crashFixture,
  JOBCTL_BIN,
  killAllDaemons,
  runCli,
  startDaemonProcess,
  writeDaemonSettings,
  type DaemonProcess,
  type JobTypeSettings,
} from '../helpers/daemonProcess.js';
import { waitForCount, waitForDoc } from '../helpers/waitFor.js';

const record: JobTypeSettings = { handler: crashFixture('record.mjs'), mode: 'pooled' };

describe('crash: a daemon claims only the types it runs', () => {
  let t: TestDb;
  let client: JobdClient;
  let runsFile: string;
  beforeEach(async () => {
    t = await openTestDb('crash_types');
    client = await JobdClient.connect({ mongoUri: t.uri, database: t.dbName });
    runsFile = join(writeDaemonSettings({ mongoUri: t.uri, database: t.dbName }).dir, 'runs.txt');
    writeFileSync(runsFile, '');
  });
  afterEach(async () => {
    await killAllDaemons();
    await client.close();
    await t.close();
  });

  const daemon = (types: string[]) =>
    writeDaemonSettings({
      mongoUri: t.uri,
      database: t.dbName,
      jobTypes: Object.fromEntries(types.map((name) => [name, record])),
    });

  /**
   * Enqueues one `type` job behind everything queued (lowest priority) and waits until `d` completed
   * it: by then `d` has looked at every job before it, and took only what it runs.
   */
  async function passedOver(d: DaemonProcess, type: string): Promise<void> {
    const { job } = await client.enqueue(type, { file: runsFile }, { priority: 1_000 });
    const done = await waitForDoc(
      client.store.jobs,
      { _id: job._id, state: 'completed' },
      { what: `${type} job completed` },
    );
    expect(done.result).toMatchObject({ ppid: d.pid });
  }

  it('two daemons, one runs alpha and beta, the other only alpha: every beta job completes on the first', async () => {
    // The daemon that does not know beta starts first and has every chance to take the beta jobs.
    const onlyAlpha = await startDaemonProcess(daemon(['alpha']));
    const beta = (
      await client.enqueueMany(
        Array.from({ length: 20 }, () => ({ type: 'beta', params: { file: runsFile } })),
      )
    ).map((r) => r.job._id);
    await passedOver(onlyAlpha, 'alpha');
    expect(await client.store.jobs.countDocuments({ _id: { $in: beta }, state: 'queued', attempts: 0 })).toBe(
      20,
    );

    const both = await startDaemonProcess(daemon(['alpha', 'beta']));
    await waitForCount(client.store.jobs, { _id: { $in: beta }, state: 'completed' }, 20, {
      what: 'the beta jobs completed',
    });
    for (const id of beta) {
      const doc = (await client.get(id))!;
      // Picked fields, so a failure shows the values that differ. On a starved machine an attempt may
      // lose its 2 s lease and run again; then only on this daemon, and only for that reason.
      const { state, attempts, result, errors } = doc as typeof doc & { result?: { ppid?: number } };
      expect({ id, state, ppid: result?.ppid, errors: errors.map((e) => e.code) }).toEqual({
        id,
        state: 'completed',
        ppid: both.pid,
        errors: Array.from({ length: attempts - 1 }, () => 'JOBD_LEASE_EXPIRED'),
      });
    }
    expect(await client.store.jobs.countDocuments({ state: 'failed' })).toBe(0);
    expect(onlyAlpha.lines().filter((l) => l.msg === 'job failed')).toEqual([]);
    const [a, b] = await Promise.all([onlyAlpha.stop(), both.stop()]);
    expect([a.code, b.code]).toEqual([0, 0]);
  });

  it('a rolling deploy: jobs of a new type wait, reported by jobctl status, until a daemon that runs it starts', async () => {
    const old = daemon(['alpha']);
    const oldDaemon = await startDaemonProcess(old);
    const gamma = (
      await client.enqueueMany(
        Array.from({ length: 5 }, () => ({ type: 'gamma', params: { file: runsFile } })),
      )
    ).map((r) => r.job._id);
    await passedOver(oldDaemon, 'alpha');
    expect(
      await client.store.jobs.countDocuments({ _id: { $in: gamma }, state: 'queued', attempts: 0 }),
    ).toBe(5);

    const status = await runCli(JOBCTL_BIN, ['status', '--settings', old.file]);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain('5 jobs of type gamma wait: no live daemon runs this type');
    expect(status.stdout).toMatch(new RegExp(`${oldDaemon.workerId} alive, last seen \\d+ s ago`));
    const json = JSON.parse(
      (await runCli(JOBCTL_BIN, ['status', '--json', '--settings', old.file])).stdout,
    ) as {
      unservedTypes: unknown[];
    };
    expect(json.unservedTypes).toEqual([{ type: 'gamma', queued: 5, retrying: 0 }]);

    const updated = await startDaemonProcess(daemon(['alpha', 'gamma']));
    await waitForCount(client.store.jobs, { _id: { $in: gamma }, state: 'completed' }, 5, {
      what: 'the gamma jobs completed by the new daemon',
    });
    for (const id of gamma) expect((await client.get(id))!.result).toMatchObject({ ppid: updated.pid });
    const after = await runCli(JOBCTL_BIN, ['status', '--settings', old.file]);
    expect(after.stdout).not.toContain('gamma');

    // A daemon killed outright still shows as registered, with when it was last seen.
    updated.signal('SIGKILL');
    await updated.exited;
    const killed = await runCli(JOBCTL_BIN, ['status', '--settings', old.file]);
    expect(killed.stdout).toMatch(new RegExp(`${updated.workerId} (alive|dead), last seen \\d+ s ago`));
  });
});
