/**
 * Dataset status in the legacy vocabulary, end to end with the real job types: one daemon for the
 * file; the sync → conversion pipeline started by the library and by jobctl (a subprocess), with
 * google_sync copying a file:/// source with rclone and dataset_conversion running a converter script
 * in command mode; the status history checked against the legacy table; a conversion failing for
 * good; a missing dataset; the guard; a repeated apply; and the legacy migration's rollback restoring
 * a status its jobs moved.
 */
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EJSON } from 'bson';
import pino from 'pino';
import type { Collection, Document } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveDatasets } from '../../src/config/datasets.js';
import type { ResolvedConfig } from '../../src/config/types.js';
import { processDataset } from '../../src/datasets/admin.js';
import { applyMigration, rollbackMigration } from '../../src/migrate/migrate.js';
import { enqueue, resolveNewJob } from '../../src/store/index.js';
import { writeDatasetStatus, type DatasetDoc } from '../../src/store/datasets.js';
import { startDaemon, type Daemon } from '../../src/worker/daemon.js';
import { run, writeSettings } from '../cli/proc.js';
import { LEGACY_PATHS, illegalEdges } from '../fixtures/legacy/statusTable.js';
import { waitUntil } from '../helpers/waitFor.js';
import { testConfig } from './daemon-helpers.js';
import { openStoreFixture, type StoreFixture } from './store-helpers.js';

let f: StoreFixture;
let daemon: Daemon;
let config: ResolvedConfig;
let datasets: Collection<DatasetDoc>;
let settingsFile: string;
let root: string;
let upload: string;
let sources: string;
let gate: string;

/**
 * A converter with the legacy calling convention, <input> <output> <sensor> <k=v,...>: copies the
 * input and records its arguments; exits 1 (retried) when told to fail; holds while its gate exists.
 */
const CONVERTER = `import { cpSync, existsSync, writeFileSync } from 'node:fs';
const [input, output, sensor, params] = process.argv.slice(2);
const p = Object.fromEntries(params.split(',').filter(Boolean).map((kv) => kv.split('=')));
if (p.fail === 'always') { console.error('converter: cannot read this sensor'); process.exit(1); }
const finish = () => {
  cpSync(input, output, { recursive: true });
  writeFileSync(output + '/args.json', JSON.stringify({ sensor, params }));
  console.log('converting 100%');
};
if (p.gate) {
  const t = setInterval(() => { if (!existsSync(p.gate)) { clearInterval(t); finish(); } }, 20);
} else finish();
`;

beforeAll(async () => {
  f = await openStoreFixture('dataset_status');
  root = realpathSync(mkdtempSync(join(tmpdir(), 'jobd-dstatus-')));
  upload = join(root, 'upload');
  sources = join(root, 'sources');
  const converted = join(root, 'converted');
  for (const d of [upload, converted, sources]) mkdirSync(d);
  // Each dataset's remote folder: a file:/// source in the data dirs, which google_sync copies with rclone.
  for (const uuid of ['ok-1', 'fail-1', 'hold-1', 'mig-1']) {
    mkdirSync(join(sources, uuid));
    writeFileSync(join(sources, uuid, 'frame.tif'), `frames of ${uuid}\n`);
  }
  const script = join(root, 'converter.mjs');
  writeFileSync(script, CONVERTER);
  gate = join(root, 'hold-1.gate');
  writeFileSync(gate, '');
  const dataDirs = { upload, converted, sources };
  const converter = { program: process.execPath, args: [script] };
  // rclone wants a config even for local sources: an empty one.
  const rclone = { config: join(sources, 'rclone.conf') };
  writeFileSync(rclone.config, '');
  config = {
    ...testConfig(f, { dataDirs }),
    data: { extract: {}, rclone, converter },
    datasets: resolveDatasets({}),
  };
  settingsFile = writeSettings({
    mongoUri: f.t.uri,
    database: f.t.dbName,
    dataDir: join(root, 'var'),
    dataDirs,
    data: { converter, rclone },
  });
  datasets = f.store.db.collection<DatasetDoc>('visstoredatas');
  const base = { user: 'someone@example.org', sensor: 'TIFF', status: 'submitted' };
  const link = (uuid: string) => `file://${join(sources, uuid)}`;
  await f.store.db.collection('visstoredatas').insertMany([
    { uuid: 'ok-1', ...base, google_drive_link: link('ok-1'), conversion_parameters: { quality: 'high' } },
    { uuid: 'fail-1', ...base, google_drive_link: link('fail-1'), conversion_parameters: { fail: 'always' } },
    { uuid: 'hold-1', ...base, google_drive_link: link('hold-1'), conversion_parameters: { gate } },
    { uuid: 'no-sensor', status: 'submitted', user: 'someone@example.org', google_drive_link: 'x:y' },
  ]);
  daemon = await startDaemon({ config, logger: pino({ level: process.env.JOBD_TEST_LOG ?? 'silent' }) });
}, 60_000);

afterAll(async () => {
  await daemon?.stop({ graceMs: 1_000 });
  await f?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

const jobctl = (args: string[]) =>
  run('jobctl', [...args, '--settings', settingsFile], { timeoutMs: 60_000 });

async function dataset(uuid: string): Promise<DatasetDoc> {
  return (await datasets.findOne({ uuid }))!;
}

/** The statuses a dataset went through, from its history: the first `from`, then each `to`. */
function path(d: DatasetDoc): string[] {
  const h = d.jobd_status?.history ?? [];
  return h.length ? [String(h[0]!.from), ...h.map((e) => e.to)] : [];
}

/** Every job of the dataset finished and applied to it (nothing left for the status service). */
async function settled(uuid: string, status: string): Promise<DatasetDoc | undefined> {
  const pending = await f.store.jobs.countDocuments({ datasetUuid: uuid, datasetStatusFinal: { $ne: true } });
  const d = await dataset(uuid);
  return pending === 0 && d.status === status ? d : undefined;
}

describe('dataset status follows the legacy transitions', () => {
  it('through a sync → conversion pipeline, and through a conversion failing for good', async () => {
    const now = new Date();
    const [ok, bad] = await Promise.all([
      processDataset(f.store, config, 'ok-1', 'sync-convert', now),
      processDataset(f.store, config, 'fail-1', 'sync-convert', now),
    ]);
    expect(ok.workflow._id).toBe('dataset-ok-1-1');
    // Every job carries the dataset's uuid; params come from the dataset document and the data dirs.
    const convert = await f.store.jobs.findOne({ _id: ok.workflow.keys.convert! });
    expect(convert).toMatchObject({
      datasetUuid: 'ok-1',
      params: {
        input_path: join(upload, 'ok-1'),
        sensor_type: 'TIFF',
        conversion_params: { quality: 'high' },
      },
    });
    const [done, failed] = await Promise.all([
      waitUntil(() => settled('ok-1', 'done'), { what: 'ok-1 done' }),
      waitUntil(() => settled('fail-1', 'conversion error'), { what: 'fail-1 conversion error' }),
    ]);
    expect(path(done)).toEqual(LEGACY_PATHS.syncConvert);
    // The real tools ran: rclone copied the source, the converter got the legacy arguments.
    const out = join(config.dataDirs.converted!, 'ok-1');
    expect(readFileSync(join(out, 'frame.tif'), 'utf8')).toBe('frames of ok-1\n');
    expect(JSON.parse(readFileSync(join(out, 'args.json'), 'utf8'))).toEqual({
      sensor: 'TIFF',
      params: 'quality=high',
    });
    // Two attempts (maxAttempts 2): the first failure is retried, the second is for good.
    expect(path(failed)).toEqual([
      'submitted',
      'sync queued',
      'syncing',
      'conversion queued',
      'converting',
      'conversion error',
      'conversion queued',
      'converting',
      'conversion error',
    ]);
    expect(illegalEdges(path(failed))).toEqual([]);
    const conv = (await f.store.jobs.findOne({ _id: bad.workflow.keys.convert! }))!;
    expect(conv.state).toBe('failed');
    expect(failed.jobd_status).toMatchObject({ jobId: conv._id });
    expect(failed.jobd_status!.history.at(-1)).toMatchObject({
      from: 'converting',
      to: 'conversion error',
      jobId: conv._id,
      type: 'dataset_conversion',
      jobState: 'failed',
    });
  });

  it('jobctl dataset show and process: the report, not found, a busy dataset, bad pipelines', async () => {
    // Independent commands run side by side; the second process of hold-1 follows the first.
    const [shown, missing, [started, again], unknown] = await Promise.all([
      jobctl(['dataset', 'show', 'ok-1', '--json']),
      jobctl(['dataset', 'show', 'no-such-dataset']),
      jobctl(['dataset', 'process', 'hold-1', '--pipeline', 'sync-convert', '--json']).then(async (first) => [
        first,
        await jobctl(['dataset', 'process', 'hold-1', '--pipeline', 'sync-convert']),
      ]),
      jobctl(['dataset', 'process', 'ok-1', '--pipeline', 'nope']),
    ]);
    expect(shown.code, shown.stderr).toBe(0);
    const report = JSON.parse(shown.stdout) as {
      status: string;
      history: { to: string }[];
      jobs: { type: string; state: string; attempts: number }[];
    };
    expect(report.status).toBe('done');
    expect(report.history.map((h) => h.to)).toEqual(LEGACY_PATHS.syncConvert.slice(1));
    expect(report.jobs.map((j) => [j.type, j.state, j.attempts])).toEqual([
      ['google_sync', 'completed', 1],
      ['dataset_conversion', 'completed', 1],
    ]);

    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain('dataset no-such-dataset not found in collection visstoredatas');

    expect(started!.code, started!.stderr).toBe(0);
    expect(JSON.parse(started!.stdout)).toMatchObject({ workflowId: 'dataset-hold-1-1' });
    expect(again!.code).toBe(1);
    expect(again!.stderr).toMatch(
      /dataset hold-1 is already being processed: unfinished job\(s\) \w+ \((google_sync|dataset_conversion)/,
    );
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain(
      'pipeline "nope" is not defined: must be one of sync-convert, unzip-convert, upload',
    );
    // The library refuses what jobctl would (ValidationError: exit 2), before anything is written.
    await expect(processDataset(f.store, config, 'no-sensor', 'sync-convert', new Date())).rejects.toThrow(
      'the dataset has no sensor',
    );
    expect(await f.store.jobs.countDocuments({ datasetUuid: 'no-sensor' })).toBe(0);

    await waitUntil(async () => (await dataset('hold-1')).status === 'converting', {
      what: 'hold-1 converting',
    });
    rmSync(gate);
    const held = await waitUntil(() => settled('hold-1', 'done'), { what: 'hold-1 done' });
    expect(path(held)).toEqual(LEGACY_PATHS.syncConvert);
    // Done: a second run of the pipeline is allowed, with the next workflow id.
    const second = await processDataset(f.store, config, 'hold-1', 'sync-convert', new Date());
    expect(second.workflow._id).toBe('dataset-hold-1-2');
    expect(existsSync(gate)).toBe(false);
    await waitUntil(() => settled('hold-1', 'done'), { what: 'hold-1 done again' });
  });

  it('a job whose dataset document is missing creates none; a repeated apply changes nothing; an older job is refused', async () => {
    const now = new Date();
    const { job } = await enqueue(
      f.store,
      resolveNewJob(
        'google_sync',
        { data_url: `file://${join(sources, 'ok-1')}`, input_dir: join(upload, 'absent-1') },
        { datasetUuid: 'absent-1' },
        { priority: 5 },
        now,
      ),
      now,
    );
    await waitUntil(
      () =>
        f.store.jobs
          .findOne({ _id: job._id, state: 'completed', datasetStatusFinal: true })
          .then((d) => d ?? undefined),
      { what: 'the job completed and applied' },
    );
    expect(await datasets.countDocuments({ uuid: 'absent-1' })).toBe(0);

    // A crash between the dataset write and the job's mark: the replay writes nothing twice.
    const before = await dataset('ok-1');
    await f.store.jobs.updateMany(
      { datasetUuid: 'ok-1' },
      { $unset: { datasetStatusSeq: '', datasetStatusState: '', datasetStatusFinal: '' } },
    );
    await waitUntil(() => settled('ok-1', 'done'), { what: 'ok-1 jobs applied again' });
    expect(EJSON.stringify(await dataset('ok-1'))).toBe(EJSON.stringify(before));

    // A transition of a job created before the one that set the status is refused by the filter.
    const rec = before.jobd_status!;
    const landed = await writeDatasetStatus(datasets, {
      datasetId: before._id,
      expect: { status: before.status, rev: rec.rev },
      setter: {
        jobId: 'older',
        jobCreatedAt: new Date(rec.jobCreatedAt.getTime() - 1),
        seq: 9,
        at: new Date(),
      },
      first: { seq: 9, at: new Date() },
      status: 'sync error',
      entries: [],
      historyLimit: 50,
      migratedJob: false,
    });
    expect(landed).toBe(false);
    expect((await dataset('ok-1')).status).toBe('done');
  });

  it('a migration rollback restores the status its jobs moved, and a late write of a rolled-back job is refused', async () => {
    const doc: Document = {
      uuid: 'mig-1',
      // Conversion only: a migrated sync uses the user's credentials (the auth data dir), none here.
      status: 'conversion queued',
      user: 'someone@example.org',
      sensor: 'TIFF',
      google_drive_link: `file://${join(sources, 'mig-1')}`,
    };
    await f.store.db.collection('visstoredatas').insertOne(doc);
    const original = EJSON.stringify(await dataset('mig-1'), { relaxed: false });
    const src = {
      collection: 'visstoredatas',
      uuid: 'mig-1',
      batchSize: 10,
      inDataDir: upload,
      outDataDir: config.dataDirs.converted!,
    };
    // Its input, as the legacy service left it.
    mkdirSync(join(upload, 'mig-1'));
    writeFileSync(join(upload, 'mig-1', 'frame.tif'), 'frames of mig-1\n');
    const applied = await applyMigration(f.store, src, { now: () => new Date() });
    expect(applied.jobs).toBe(1);
    const moved = await waitUntil(() => settled('mig-1', 'done'), { what: 'mig-1 done' });
    expect(path(moved)).toEqual(['conversion queued', 'converting', 'done']);
    const jobId = (moved.jobd_job_ids as string[])[0]!;
    await rollbackMigration(f.store, src, { now: () => new Date() });
    expect(EJSON.stringify(await dataset('mig-1'), { relaxed: false })).toBe(original);
    // The status service of a daemon that read the job before the rollback writes nothing after it.
    const late = await writeDatasetStatus(datasets, {
      datasetId: (await dataset('mig-1'))._id,
      expect: { status: 'conversion queued', rev: null },
      setter: { jobId, jobCreatedAt: new Date(), seq: 3, at: new Date() },
      first: { seq: 3, at: new Date() },
      status: 'converting',
      entries: [],
      historyLimit: 50,
      migratedJob: true,
    });
    expect(late).toBe(false);
    expect(EJSON.stringify(await dataset('mig-1'), { relaxed: false })).toBe(original);
  });
});
