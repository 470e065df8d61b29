/**
 * What a client holds across a restart of a durable standalone server (a real process, stopped with
 * SIGTERM or SIGKILL and started again on the same port and data directory): a change stream's resume
 * token, and a retryable write awaiting its retry. A token is never "in the future" after a restart:
 * the latest one resumes and sees later events, an older one fails with ChangeStreamHistoryLost (286).
 * A retried write is answered from the reply recorded before the restart, not executed twice.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Long,
  MongoClient,
  MongoServerError,
  type ChangeStreamDocument,
  type Document,
  type ResumeToken,
} from 'mongodb';
import {
  killAllEmbeddedProcesses,
  startEmbeddedProcess,
  type EmbeddedProcess,
} from '../helpers/embeddedProcess.js';

type Doc = { _id: number; n?: number };

const dirs: string[] = [];
const clients: MongoClient[] = [];

function dataDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'jobd-resume-'));
  dirs.push(d);
  return d;
}

async function connect(uri: string): Promise<MongoClient> {
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 10_000 });
  clients.push(client);
  await client.connect();
  return client;
}

/** Stops the server with `signal` and starts it again on the same port and data directory. */
async function restart(server: EmbeddedProcess, signal: NodeJS.Signals): Promise<EmbeddedProcess> {
  await server.stop(signal);
  return startEmbeddedProcess({ dataDir: server.dataDir as string, port: server.port });
}

/** Opens a raw change stream with `resumeAfter`; resolves with its first batch or rejects with the server's error. */
async function resumeRaw(client: MongoClient, token: ResumeToken): Promise<Document[]> {
  const reply = await client.db('app').command({
    aggregate: 'jobs',
    pipeline: [{ $changeStream: { resumeAfter: token } }],
    cursor: {},
  });
  return (reply.cursor as { firstBatch: Document[] }).firstBatch;
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close(true)));
  await killAllEmbeddedProcesses();
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe.each(['SIGTERM', 'SIGKILL'] as const)('a durable server restarted after %s', (signal) => {
  it('resumes a change stream from the latest token; an older token fails with ChangeStreamHistoryLost, never "in the future"', async () => {
    let server = await startEmbeddedProcess({ dataDir: dataDir() });
    let client = await connect(server.uri);
    const jobs = client.db('app').collection<Doc>('jobs');
    const stream = jobs.watch<Doc, ChangeStreamDocument<Doc>>();
    const first = stream.next();
    await jobs.insertOne({ _id: 1 });
    const e1 = await first;
    expect(e1).toMatchObject({ operationType: 'insert', documentKey: { _id: 1 } });
    const second = stream.next();
    await jobs.insertOne({ _id: 2 });
    const e2 = await second;
    expect(e2).toMatchObject({ operationType: 'insert', documentKey: { _id: 2 } });
    const older = e1._id;
    const latest = e2._id;
    await stream.close();
    await client.close();

    server = await restart(server, signal);
    client = await connect(server.uri);

    // The latest token: nothing after it was lost, so the stream resumes and sees later writes.
    await expect(resumeRaw(client, latest)).resolves.toEqual([]);
    const resumed = client
      .db('app')
      .collection<Doc>('jobs')
      .watch<Doc, ChangeStreamDocument<Doc>>([], { resumeAfter: latest });
    const next = resumed.next();
    await client.db('app').collection<Doc>('jobs').insertOne({ _id: 3 });
    expect(await next).toMatchObject({ operationType: 'insert', documentKey: { _id: 3 } });
    await resumed.close();

    // An older token: its later event (the insert of 2) is not retained across the restart.
    const err = await resumeRaw(client, older).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MongoServerError);
    expect((err as MongoServerError).code).toBe(286);
    expect((err as MongoServerError).codeName).toBe('ChangeStreamHistoryLost');
    expect((err as MongoServerError).message).not.toMatch(/future/);
  });

  it('answers a retried write from the reply recorded before the restart', async () => {
    const server = await startEmbeddedProcess({ dataDir: dataDir() });
    const client = await connect(server.uri);
    const db = client.db('app');
    await db.collection<Doc>('counters').insertOne({ _id: 1, n: 0 });
    const session = client.startSession();
    // Well above the txnNumbers the driver itself has used on this pooled session.
    const inc = {
      update: 'counters',
      updates: [{ q: { _id: 1 }, u: { $inc: { n: 1 } } }],
      txnNumber: Long.fromNumber(1000),
    };
    const first = await db.command(inc, { session });
    expect(first).toMatchObject({ n: 1, nModified: 1 });

    await restart(server, signal);

    // The same client reconnects to the restarted server; the same session retries the same write.
    const retried = await db.command(inc, { session });
    expect(retried).toMatchObject({ n: 1, nModified: 1 });
    expect(await db.collection<Doc>('counters').findOne({ _id: 1 })).toEqual({ _id: 1, n: 1 });
    await session.endSession();
  });
});

describe('the driver resuming its own change stream across a restart', () => {
  it('a stream that has read every event keeps delivering after the server is restarted (SIGTERM)', async () => {
    let server = await startEmbeddedProcess({ dataDir: dataDir() });
    const client = await connect(server.uri);
    const jobs = client.db('app').collection<Doc>('jobs');
    const stream = jobs.watch<Doc, ChangeStreamDocument<Doc>>([], { maxAwaitTimeMS: 200 });
    const first = stream.next();
    await jobs.insertOne({ _id: 1 });
    expect(await first).toMatchObject({ documentKey: { _id: 1 } });

    const pending = stream.next(); // waits in getMore while the server goes away and comes back
    server = await restart(server, 'SIGTERM');
    const writer = await connect(server.uri);
    await writer.db('app').collection<Doc>('jobs').insertOne({ _id: 2 });
    expect(await pending).toMatchObject({ operationType: 'insert', documentKey: { _id: 2 } });
    await stream.close();
  });
});
