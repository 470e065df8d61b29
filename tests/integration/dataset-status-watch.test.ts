/**
 * The dataset status service's change stream, with polling out of the way (statusPollMs at its
 * maximum), so every pass comes from the stream: while no dataset job is unfinished it is not woken by
 * transitions of jobs without a dataset (the first change it delivers is the next dataset job's
 * insert), yet that job's transitions, and those after an operator retry of it once finished, still
 * move its dataset's status.
 */
import type { Document } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { resolveDatasets } from '../../src/config/datasets.js';
import { DatasetStatusService } from '../../src/maintenance/datasetStatus.js';
import type { DatasetDoc } from '../../src/store/datasets.js';
import {
  claimNext,
  enqueue,
  openStore,
  retry,
  settleManyIfRunning,
  type Settlement,
  type Store,
} from '../../src/store/index.js';
import type { JobDoc } from '../../src/types.js';
import { waitUntil } from '../helpers/waitFor.js';
import { newJob, openStoreFixture, type StoreFixture } from './store-helpers.js';

let f: StoreFixture;
/** The service's own client, whose commands the test reads. */
let serviceStore: Store;
let service: DatasetStatusService;
let passes = 0;
/** What the service's change streams delivered, in order. */
const delivered: { op: string; at: number }[] = [];

const OWNER = 'test-worker';
const TAGS = ['dataset-status:file_upload'];

beforeAll(async () => {
  f = await openStoreFixture('dataset_status_watch');
  serviceStore = await openStore({
    mongoUri: f.t.uri,
    database: f.t.dbName,
    appName: 'dataset-status-watch',
    monitorCommands: true,
  });
  serviceStore.client.on('commandSucceeded', (e) => {
    if (e.commandName !== 'getMore') return;
    const batch = ((e.reply as Document).cursor?.nextBatch ?? []) as Document[];
    for (const c of batch) delivered.push({ op: String(c.operationType), at: passes });
  });
  await f.store.db.collection('visstoredatas').insertOne({ uuid: 'w-1', status: 'submitted' });
});

afterAll(async () => {
  await service?.stop();
  await serviceStore?.close();
  await f?.close();
});

/** Enqueue, claim and settle one job: completed, or failed for good. */
async function runOne(
  type: string,
  o: { datasetUuid?: string; tags?: string[] } = {},
  outcome: 'complete' | 'fail' = 'complete',
): Promise<JobDoc> {
  const now = new Date();
  const { job } = await enqueue(f.store, newJob(type, null, o, now), now);
  const claimed = await claimNext(f.store, { owner: OWNER, leaseMs: 30_000, now: new Date(), types: [type] });
  expect(claimed?._id).toBe(job._id);
  const held = {
    jobId: job._id,
    token: claimed!.lease!.token,
    attempt: claimed!.attempts,
    seq: claimed!.seq,
  };
  const s: Settlement =
    outcome === 'complete'
      ? { kind: 'complete', ...held, result: null }
      : { kind: 'fail', ...held, error: { name: 'Error', message: 'upload refused' }, retryAt: null };
  const res = await settleManyIfRunning(f.store, [s], { owner: OWNER, now: new Date(), errorHistory: 5 });
  expect(res.landed).toEqual([job._id]);
  return job;
}

const dataset = async () =>
  (await f.store.db.collection<DatasetDoc>('visstoredatas').findOne({ uuid: 'w-1' }))!;

/** The dataset's statuses from its history, once its job is finished and applied. */
async function settledPath(jobId: string, status: string): Promise<string[] | undefined> {
  const job = await f.store.jobs.findOne({ _id: jobId, datasetStatusFinal: true });
  const d = await dataset();
  if (!job || d.status !== status) return undefined;
  const h = d.jobd_status?.history ?? [];
  return [String(h[0]?.from), ...h.map((e) => e.to)];
}

describe('dataset status service: its change stream', () => {
  it('ignores transitions of jobs without a dataset while none is unfinished, and follows dataset jobs and retries', async () => {
    service = new DatasetStatusService(serviceStore, {
      settings: resolveDatasets({ statusPollMs: 600_000 }),
      clock: systemClock,
      changeStreams: true,
      onOk: () => passes++,
    });
    service.start();
    // The first pass (the stream's ready) finds no dataset job and narrows the stream.
    await waitUntil(() => passes >= 1, { what: 'the first pass' });
    const narrowed = passes;
    // Jobs without a dataset go through their transitions: nothing for the service.
    for (let i = 0; i < 10; i++) await runOne('noop');
    const job = await runOne('noop', { datasetUuid: 'w-1', tags: TAGS }, 'fail');
    const path = await waitUntil(() => settledPath(job._id, 'upload error'), { what: 'w-1 upload error' });
    expect(path).toEqual(['submitted', 'upload queued', 'uploading', 'upload error']);
    // The first change the service heard of after narrowing is the dataset job's insert: the
    // 30 transitions of the other ten jobs before it were not delivered.
    const after = delivered.filter((d) => d.at >= narrowed);
    expect(after[0]?.op).toBe('insert');

    // Failed for good and applied, the job is revived by an operator retry: its new transitions are followed.
    await retry(f.store, job._id, { now: new Date() });
    const claimed = await claimNext(f.store, {
      owner: OWNER,
      leaseMs: 30_000,
      now: new Date(),
      types: ['noop'],
    });
    expect(claimed?._id).toBe(job._id);
    await waitUntil(async () => ((await dataset()).status === 'uploading' ? true : undefined), {
      what: 'w-1 uploading again',
    });
    await settleManyIfRunning(
      f.store,
      [
        {
          kind: 'complete',
          jobId: job._id,
          token: claimed!.lease!.token,
          attempt: claimed!.attempts,
          seq: claimed!.seq,
          result: null,
        },
      ],
      { owner: OWNER, now: new Date(), errorHistory: 5 },
    );
    const again = await waitUntil(() => settledPath(job._id, 'done'), { what: 'w-1 done again' });
    expect(again).toEqual([
      'submitted',
      'upload queued',
      'uploading',
      'upload error',
      'upload queued',
      'uploading',
      'done',
    ]);
  });
});

describe('dataset status service: without change streams', () => {
  it('moves the status at statusPollMs', async () => {
    // The streamed service above would move it too: only the polling one runs here.
    await service?.stop();
    await f.store.db.collection('visstoredatas').insertOne({ uuid: 'p-1', status: 'submitted' });
    let polled = 0;
    const poller = new DatasetStatusService(serviceStore, {
      settings: resolveDatasets({ statusPollMs: 200 }),
      clock: systemClock,
      changeStreams: false,
      onOk: () => polled++,
    });
    poller.start();
    try {
      const job = await runOne('noop', { datasetUuid: 'p-1', tags: TAGS });
      const path = await waitUntil(
        async () => {
          const j = await f.store.jobs.findOne({ _id: job._id, datasetStatusFinal: true });
          const d = await f.store.db.collection<DatasetDoc>('visstoredatas').findOne({ uuid: 'p-1' });
          if (!j || d?.status !== 'done') return undefined;
          return [
            String(d.jobd_status?.history?.[0]?.from),
            ...(d.jobd_status?.history ?? []).map((e) => e.to),
          ];
        },
        { what: 'p-1 moved by polling' },
      );
      expect(path).toEqual(['submitted', 'upload queued', 'uploading', 'done']);
      // Passes keep coming at the poll interval, with nothing to do.
      const before = polled;
      await waitUntil(() => polled >= before + 3, { what: 'three more passes', timeoutMs: 30_000 });
    } finally {
      await poller.stop();
    }
  });
});
