/**
 * Signals that land in the middle of a compaction of the real `jobd-embedded`: the test watches the data
 * directory and sends the signal the moment the new snapshot's temporary file appears, while writers
 * keep writes in flight. After a restart every acknowledged write is there. Then documents close to
 * the 16 MiB limit, through the log, compactions and a restart.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync, watch } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { MongoClient } from 'mongodb';
import {
  killAllEmbeddedProcesses,
  startEmbeddedProcess,
  type EmbeddedProcess,
} from '../helpers/embeddedProcess.js';

const dirs: string[] = [];
const clients: MongoClient[] = [];

function dataDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'jobd-crash-compaction-'));
  dirs.push(d);
  return d;
}

async function connect(server: EmbeddedProcess): Promise<MongoClient> {
  const client = new MongoClient(server.uri, { serverSelectionTimeoutMS: 10_000, retryWrites: false });
  clients.push(client);
  await client.connect();
  return client;
}

async function closeClients(): Promise<void> {
  await Promise.all(clients.splice(0).map((c) => c.close(true).catch(() => {})));
}

afterEach(async () => {
  await closeClients();
  await killAllEmbeddedProcesses();
});

afterAll(() => {
  if (process.env.JOBD_KEEP_TEST_DB === '1') return;
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

type Job = { _id: number; state: string; params: { items: { n: number; label: string }[] } };

/** A job-like document of about 2 KB with many small values, which are slow to encode and decode. */
function job(_id: number): Job {
  return {
    _id,
    state: 'queued',
    params: { items: Array.from({ length: 60 }, (_, n) => ({ n, label: `item ${n} of ${_id}` })) },
  };
}

const THRESHOLD = 6 * 1024 * 1024;

/**
 * Writes until the first compaction starts, sends `signal` the moment its temporary file appears,
 * and returns the ids whose insert was acknowledged, and what the directory held at that moment.
 */
async function signalDuringCompaction(
  server: EmbeddedProcess,
  signal: NodeJS.Signals,
): Promise<{ acknowledged: Set<number>; atSignal: { tmp: boolean; snapshot: boolean } }> {
  const dir = server.dataDir as string;
  const tmp = join(dir, 'snapshot-1.jobd.tmp');
  let atSignal: { tmp: boolean; snapshot: boolean } | undefined;
  let signalled: () => void = () => {};
  const sent = new Promise<void>((r) => (signalled = r));
  const watcher = watch(dir, (_event, name) => {
    if (atSignal || name !== 'snapshot-1.jobd.tmp') return;
    server.child.kill(signal);
    atSignal = { tmp: existsSync(tmp), snapshot: existsSync(join(dir, 'snapshot-1.jobd')) };
    signalled();
  });
  const client = await connect(server);
  const jobs = client.db('app').collection<Job>('jobs');
  const acknowledged = new Set<number>();
  let next = 0;
  // Batches of 250 jobs (about 0.5 MB) keep the log growing; two writers keep writes in flight.
  const writer = async (): Promise<void> => {
    for (;;) {
      const batch = Array.from({ length: 250 }, () => job(next++));
      try {
        await jobs.insertMany(batch);
      } catch {
        return; // the server is going or gone
      }
      for (const j of batch) acknowledged.add(j._id);
      if (next > 40_000) throw new Error(`no compaction started:\n${server.output()}`);
    }
  };
  try {
    await Promise.all([writer(), writer(), sent]);
  } finally {
    watcher.close();
  }
  await server.waitForExit();
  await closeClients();
  return { acknowledged, atSignal: atSignal as { tmp: boolean; snapshot: boolean } };
}

async function expectAllPresent(server: EmbeddedProcess, acknowledged: Set<number>): Promise<void> {
  const client = await connect(server);
  const jobs = client.db('app').collection<Job>('jobs');
  const present = new Set((await jobs.find({}, { projection: { _id: 1 } }).toArray()).map((d) => d._id));
  const missing = [...acknowledged].filter((id) => !present.has(id));
  expect(missing).toEqual([]);
  expect(await jobs.findOne({ _id: Math.max(...acknowledged) })).toEqual(job(Math.max(...acknowledged)));
}

describe('jobd-embedded: a signal in the middle of a compaction', () => {
  it('SIGKILL while the new snapshot is being written: restart has every acknowledged write', async () => {
    const dir = dataDir();
    const server = await startEmbeddedProcess({
      dataDir: dir,
      args: ['--compact-threshold-bytes', String(THRESHOLD)],
    });
    const { acknowledged, atSignal } = await signalDuringCompaction(server, 'SIGKILL');
    expect(atSignal).toEqual({ tmp: true, snapshot: false });
    // the kill landed mid-compaction: the temporary file is still there, the snapshot never was
    expect(existsSync(join(dir, 'snapshot-1.jobd.tmp'))).toBe(true);
    expect(existsSync(join(dir, 'snapshot-1.jobd'))).toBe(false);
    expect(acknowledged.size).toBeGreaterThan(0);

    const restarted = await startEmbeddedProcess({ dataDir: dir });
    expect(existsSync(join(dir, 'snapshot-1.jobd.tmp'))).toBe(false);
    await expectAllPresent(restarted, acknowledged);
  });

  it('SIGTERM while the new snapshot is being written: a clean exit, and restart has every acknowledged write', async () => {
    const dir = dataDir();
    const server = await startEmbeddedProcess({
      dataDir: dir,
      args: ['--compact-threshold-bytes', String(THRESHOLD)],
    });
    const { acknowledged, atSignal } = await signalDuringCompaction(server, 'SIGTERM');
    expect(atSignal).toEqual({ tmp: true, snapshot: false });
    const exit = await server.waitForExit();
    expect(exit.code, exit.output).toBe(0);
    expect(exit.output).toMatch(/compacted .* in [\d.]+ ms/);

    const restarted = await startEmbeddedProcess({ dataDir: dir });
    await expectAllPresent(restarted, acknowledged);
  });
});

describe('jobd-embedded: documents close to the 16 MiB limit', () => {
  it('are logged, compacted, and read back equal after a restart', async () => {
    const dir = dataDir();
    const server = await startEmbeddedProcess({
      dataDir: dir,
      args: ['--compact-threshold-bytes', String(1024 * 1024)],
    });
    const body = 'x'.padEnd(16 * 1024 * 1024 - 64 * 1024, 'abcdefgh');
    const digest = (s: string): string => createHash('sha256').update(s).digest('hex');
    const client = await connect(server);
    const coll = client.db('app').collection<{ _id: number; body: string }>('big');
    // over the threshold: a compaction after it, and the last one at the stop
    await coll.insertOne({ _id: 1, body });
    await coll.insertOne({ _id: 2, body: 'small' });
    await client.db('admin').command({ ping: 1 });
    await closeClients();
    const exit = await server.stop('SIGTERM');
    expect(exit.code, exit.output).toBe(0);
    expect(exit.output.match(/compacted .* in [\d.]+ ms/g)?.length).toBe(2);

    const restarted = await startEmbeddedProcess({ dataDir: dir });
    const after = (await connect(restarted)).db('app').collection<{ _id: number; body: string }>('big');
    const docs = await after.find().sort({ _id: 1 }).toArray();
    expect(docs.map((d) => [d._id, d.body.length, digest(d.body)])).toEqual([
      [1, body.length, digest(body)],
      [2, 5, digest('small')],
    ]);
  });
});
