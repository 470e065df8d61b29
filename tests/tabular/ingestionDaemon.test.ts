/**
 * The ingestion job types through real daemon processes: settings (tabular.sources) → child → core →
 * result. A daemon is SIGKILLed while api_ingestion waits on a page the test server holds; a second
 * daemon rescues the job and resumes after the last page written, every record once. The source's
 * secrets appear in no log, output or job document. file_ingestion and database_ingestion run on the
 * same daemon.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import { loadSettings } from '../../src/config/settings.js';
import type { JobDoc, JobId } from '../../src/types.js';
import { openTestDb, type TestDb } from '../helpers/db.js';
import {
  killAllDaemons,
  startDaemonProcess,
  writeDaemonSettings,
  type DaemonProcess,
  type DaemonSettings,
} from '../helpers/daemonProcess.js';
import { waitUntil } from '../helpers/waitFor.js';
import { startApiServer, type ApiServer } from './apiServer.js';

const TOKEN = 'Zq8-ingest-Bearer-Secret-77';
let t: TestDb;
let api: ApiServer;
let data: string;
let settings: DaemonSettings;
let client: JobdClient;
const daemons: DaemonProcess[] = [];

beforeAll(async () => {
  t = await openTestDb('tab_ingest');
  api = await startApiServer({ total: 120, token: TOKEN });
  data = realpathSync(mkdtempSync(join(tmpdir(), 'jobd-tab-ingest-')));
  mkdirSync(join(data, 'tab'));
  settings = writeDaemonSettings({
    mongoUri: t.uri,
    database: t.dbName,
    extra: {
      dataDirs: { tab: join(data, 'tab') },
      tabular: {
        sources: {
          api: { kind: 'http', baseUrl: api.url, headers: { Authorization: `Bearer ${TOKEN}` } },
          shop: { kind: 'mongodb', uri: t.uri, database: t.dbName },
        },
      },
    },
  });
  const config = loadSettings({ file: settings.file, env: {} });
  client = await JobdClient.connect({
    mongoUri: t.uri,
    database: t.dbName,
    jobTypes: config.jobTypes,
    dataDirs: config.dataDirs,
  });
}, 60_000);

afterAll(async () => {
  await killAllDaemons();
  await api?.close();
  await client?.close();
  await t?.close();
});

async function settled(id: JobId): Promise<JobDoc> {
  return waitUntil(
    async () =>
      ((await client.store.jobs.findOne({
        _id: id,
        state: { $in: ['completed', 'failed'] },
      })) as JobDoc | null) ?? undefined,
    { what: `job ${id} finished`, timeoutMs: 90_000, intervalMs: 100 },
  );
}

describe('ingestion job types in a daemon', () => {
  it(
    'a SIGKILLed api_ingestion resumes in a second daemon without duplicates',
    { timeout: 150_000 },
    async () => {
      const a = await startDaemonProcess(settings);
      daemons.push(a);
      const arrived = api.hold(50);
      const output = join(data, 'tab', 'api.ndjson');
      const { job } = await client.enqueue('api_ingestion', {
        source: 'api',
        path: 'page',
        records_path: 'data.items',
        pagination: { style: 'page', size: 10 },
        output,
      });
      await arrived;
      // Pages 1 to 5 are written and checkpointed; page 6 is held.
      expect(readdirSync(join(data, 'tab'))).toContain('.api.ndjson.jobd-checkpoint.json');
      a.signal('SIGKILL');
      await a.exited;
      // The dead daemon's child goes with it: its held request's connection closes.
      await api.gone();
      api.release();
      const b = await startDaemonProcess(settings);
      daemons.push(b);
      const done = await settled(job._id);
      expect(done.state).toBe('completed');
      expect(done.attempts).toBeGreaterThanOrEqual(2);
      expect(done.result).toMatchObject({ records: 120, pages: 13, resumed_at_page: 5 });
      const ids = readFileSync(output, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => (JSON.parse(l) as { id: number }).id);
      expect(ids).toEqual(Array.from({ length: 120 }, (_, i) => i + 1));
      expect(readdirSync(join(data, 'tab')).filter((n) => n.includes('jobd-'))).toEqual([]);
    },
  );

  it('file_ingestion and database_ingestion complete through the daemon', { timeout: 90_000 }, async () => {
    const d = daemons.find((x) => x.alive) ?? (await startDaemonProcess(settings));
    if (!daemons.includes(d)) daemons.push(d);
    const csv = join(data, 'tab', 'in.csv');
    writeFileSync(csv, 'id,v\n1,2.5\n2,x\n3,4\n');
    await t.db.collection('stock').insertMany([
      { sku: 'a', qty: 1 },
      { sku: 'b', qty: 2 },
    ]);
    const f = await client.enqueue('file_ingestion', {
      source: csv,
      output: join(data, 'tab', 'in.ndjson'),
      types: { id: 'int', v: 'float' },
      bad_rows: 'quarantine',
      quarantine: join(data, 'tab', 'in.bad.ndjson'),
    });
    const db = await client.enqueue('database_ingestion', {
      source: 'shop',
      collection: 'stock',
      projection: { _id: 0 },
      sort: { sku: 1 },
      output: join(data, 'tab', 'stock.ndjson'),
    });
    const outside = await client
      .enqueue('file_ingestion', { source: csv, output: join(data, 'elsewhere.ndjson') })
      .then(
        () => 'accepted',
        (e: Error) => e.message,
      );
    expect(outside).toMatch(/output.*data dir/);
    expect((await settled(f.job._id)).result).toMatchObject({ records: 2, quarantined: 1 });
    expect((await settled(db.job._id)).result).toMatchObject({ records: 2, batches: 1 });
    expect(readFileSync(join(data, 'tab', 'stock.ndjson'), 'utf8')).toBe(
      '{"sku":"a","qty":1}\n{"sku":"b","qty":2}\n',
    );
  });

  it('the source secrets appear in no daemon output, job log or job document', async () => {
    const docs = JSON.stringify(await client.store.jobs.find({}).toArray());
    expect(docs).not.toContain(TOKEN);
    for (const d of daemons) expect(JSON.stringify(d.lines()) + d.text()).not.toContain(TOKEN);
    for (const f of readdirSync(settings.logDir)) {
      expect(readFileSync(join(settings.logDir, f), 'utf8')).not.toContain(TOKEN);
    }
  });
});
