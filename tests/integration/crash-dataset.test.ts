/**
 * A real jobd process is SIGKILLed while a dataset's sync runs; a second daemon rescues the job, and the
 * dataset's status goes on along legal legacy edges to `done`, the lost attempt recorded as a sync
 * error followed by a new sync.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processDataset } from '../../src/datasets/admin.js';
import { resolveDatasets } from '../../src/config/datasets.js';
import { openStore, type Store } from '../../src/store/index.js';
import type { DatasetDoc } from '../../src/store/datasets.js';
import { openTestDb, type TestDb } from '../helpers/db.js';
import { killAllDaemons, startDaemonProcess, writeDaemonSettings } from '../helpers/daemonProcess.js';
import { waitUntil } from '../helpers/waitFor.js';
import { illegalEdges } from '../fixtures/legacy/statusTable.js';
import { fixtureHandler } from './daemon-helpers.js';

let t: TestDb;
let store: Store;
beforeAll(async () => {
  t = await openTestDb('crash_dataset');
  store = await openStore({ mongoUri: t.uri, database: t.dbName, appName: 'crash-dataset' });
});
afterAll(async () => {
  await killAllDaemons();
  await store?.close();
  await t?.close();
});

describe('crash: dataset status across a SIGKILLed daemon', () => {
  it('the rescued sync moves the status on along legal edges to done', { timeout: 120_000 }, async () => {
    const root = mkdtempSync(join(tmpdir(), 'jobd-crash-dataset-'));
    const dataDirs = { upload: join(root, 'upload'), converted: join(root, 'converted') };
    for (const d of Object.values(dataDirs)) mkdirSync(d);
    const stage = fixtureHandler('datasetStage.mjs');
    const settings = writeDaemonSettings({
      mongoUri: t.uri,
      database: t.dbName,
      jobTypes: { google_sync: { handler: stage }, dataset_conversion: { handler: stage } },
      extra: { dataDirs },
    });
    const datasets = t.db.collection<DatasetDoc>('visstoredatas');
    await t.db.collection('visstoredatas').insertOne({
      uuid: 'crash-1',
      status: 'submitted',
      user: 'someone@example.org',
      sensor: 'TIFF',
      google_drive_link: 'rclone:remote:crash-1#hold',
    });
    const a = await startDaemonProcess(settings);
    await processDataset(
      store,
      { dataDirs, jobTypes: {}, defaults: { priority: 5 } as never, datasets: resolveDatasets({}) },
      'crash-1',
      'sync-convert',
      new Date(),
    );
    await waitUntil(
      async () => (await datasets.findOne({ uuid: 'crash-1', status: 'syncing' })) ?? undefined,
      {
        what: 'crash-1 syncing',
      },
    );
    a.signal('SIGKILL');
    await a.exited;
    const b = await startDaemonProcess(settings);
    // The sync b rescues and runs again may finish this time.
    writeFileSync(join(dataDirs.upload, 'crash-1.go'), '');
    const done = await waitUntil(
      async () => {
        const pending = await store.jobs.countDocuments({
          datasetUuid: 'crash-1',
          datasetStatusFinal: { $ne: true },
        });
        const d = await datasets.findOne({ uuid: 'crash-1', status: 'done' });
        return pending === 0 && d ? d : undefined;
      },
      { what: 'crash-1 done', timeoutMs: 60_000 },
    );
    const h = done.jobd_status!.history;
    const path = [String(h[0]!.from), ...h.map((e) => e.to)];
    // The kill costs the sync one attempt. On a starved machine a rescued attempt may lose its short
    // lease again; every extra round must then be the same legal sync error → sync queued → syncing.
    expect(path.slice(0, 4)).toEqual(['submitted', 'sync queued', 'syncing', 'sync error']);
    expect(path.slice(-5)).toEqual(['sync queued', 'syncing', 'conversion queued', 'converting', 'done']);
    const rounds = path.slice(4, -5);
    expect(rounds.length % 3).toBe(0);
    for (let i = 0; i < rounds.length; i += 3) {
      expect(rounds.slice(i, i + 3)).toEqual(['sync queued', 'syncing', 'sync error']);
    }
    expect(illegalEdges(path)).toEqual([]);
    const sync = (await store.jobs.findOne({ datasetUuid: 'crash-1', type: 'google_sync' }))!;
    expect(sync).toMatchObject({ state: 'completed', attempts: 2 + rounds.length / 3 });
    expect(sync.errors.map((e) => e.code)).toEqual(sync.errors.map(() => 'JOBD_LEASE_EXPIRED'));
    expect(sync.errors.length).toBe(sync.attempts - 1);
    await b.stop();
  });
});
