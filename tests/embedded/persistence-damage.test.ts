/**
 * A data directory damaged by hand, started with the real `jobd-embedded`: without --repair it is
 * refused with exit code 5 and a message naming the file, the offset and what lies past the damage,
 * and nothing is changed; with --repair the server starts with everything before the damage and the
 * damaged file is kept whole beside it. Then it is healthy: a start without --repair works.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { MongoClient, type Document } from 'mongodb';
import {
  FRAME_HEADER_BYTES,
  HEADER_BYTES,
  Tag,
  decodeDocuments,
  scanFrames,
} from '../../src/embedded/persistenceFrames.js';
import { run, writeSettings } from '../cli/proc.js';
import {
  killAllEmbeddedProcesses,
  spawnEmbeddedProcess,
  startEmbeddedProcess,
  type EmbeddedProcess,
  type ExitInfo,
} from '../helpers/embeddedProcess.js';

const dirs: string[] = [];
const clients: MongoClient[] = [];

function dataDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'jobd-damage-'));
  dirs.push(d);
  return d;
}

async function connect(server: EmbeddedProcess): Promise<MongoClient> {
  const client = new MongoClient(server.uri, { serverSelectionTimeoutMS: 10_000 });
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

/** Every data file of the directory, by name, with its bytes (a stale LOCK left by SIGKILL is not data). */
function snapshotOfDir(dir: string): Map<string, Buffer> {
  return new Map(
    readdirSync(dir)
      .filter((f) => f !== 'LOCK')
      .sort()
      .map((f) => [f, readFileSync(join(dir, f))]),
  );
}

function expectUnchanged(dir: string, before: Map<string, Buffer>): void {
  const after = snapshotOfDir(dir);
  expect([...after.keys()]).toEqual([...before.keys()]);
  for (const [name, bytes] of before) expect((after.get(name) as Buffer).equals(bytes), name).toBe(true);
}

interface Frame {
  offset: number;
  tag: number;
  len: number;
  docs: Document[];
}

function framesOf(path: string): Frame[] {
  const out: Frame[] = [];
  scanFrames(path, HEADER_BYTES, (tag, payload, offset) =>
    out.push({ offset, tag, len: payload.length, docs: decodeDocuments(payload, {}) }),
  );
  return out;
}

/** `ns` → the _ids a snapshot's frames before `end` hold. */
function snapshotIdsBefore(frames: Frame[], end: number): Map<string, unknown[]> {
  const out = new Map<string, unknown[]>();
  let ns = '';
  for (const f of frames) {
    if (f.offset >= end) break;
    if (f.tag === Tag.collection) {
      ns = `${String(f.docs[0]?.db)}.${String(f.docs[0]?.coll)}`;
      out.set(ns, []);
    } else if (f.tag === Tag.documents) {
      out.get(ns)?.push(...f.docs.map((d) => d._id));
    }
  }
  return out;
}

async function ids(client: MongoClient, coll: string): Promise<unknown[]> {
  const docs = await client
    .db('app')
    .collection<{ _id: number }>(coll)
    .find({}, { projection: { _id: 1 } })
    .sort({ _id: 1 })
    .toArray();
  return docs.map((d) => d._id);
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

/** Refused start: exit 5, the message names the file and offset, says --repair, and the directory is untouched. */
async function expectRefused(dir: string, file: string, offset: number): Promise<ExitInfo> {
  const before = snapshotOfDir(dir);
  const child = spawnEmbeddedProcess({ dataDir: dir });
  const outcome = await Promise.race([child.exited, child.ready.then(() => 'started' as const)]);
  if (outcome === 'started') {
    child.child.kill('SIGKILL');
    throw new Error(`the server started on a damaged data directory:\n${child.output()}`);
  }
  const exit = outcome;
  expect(exit.code, exit.output).toBe(5);
  expect(exit.output).toContain(`jobd-embedded: cannot start: data directory ${dir} is damaged: ${file}: `);
  expect(exit.output).toContain(`at offset ${offset}`);
  expect(exit.output).toMatch(/Nothing has been changed\. .*--repair/);
  expectUnchanged(dir, before);
  return exit;
}

/** Repaired start: the repair is reported with where the damaged file is kept, which holds the damaged bytes. */
async function startRepaired(dir: string, file: string, damaged: Buffer): Promise<EmbeddedProcess> {
  const server = await startEmbeddedProcess({ dataDir: dir, args: ['--repair'] });
  const line = await server.waitForLine(/repaired data directory/);
  const keptAs = new RegExp(`kept as (${file}\\.damaged-\\S+)$`).exec(line)?.[1] as string;
  expect(keptAs, line).toBeDefined();
  expect(readFileSync(keptAs).equals(damaged)).toBe(true);
  return server;
}

describe('jobd-embedded on a data directory damaged by hand', () => {
  it('a snapshot with bytes flipped in the middle: exit 5 naming the damage; --repair keeps every frame before it and the log after it', async () => {
    const dir = dataDir();
    const first = await startEmbeddedProcess({ dataDir: dir });
    const client = await connect(first);
    // 100 documents of 12 KB: more than one snapshot frame (about 1 MiB each) per collection
    const pad = 'p'.repeat(12_000);
    for (const coll of ['a', 'b', 'c']) {
      await client
        .db('app')
        .collection<{ _id: number }>(coll)
        .insertMany(range(0, 100).map((_id) => ({ _id, pad })));
    }
    await closeClients();
    expect((await first.stop('SIGTERM')).code).toBe(0); // compacts: snapshot-1 holds it all
    // a write after the snapshot, in the log only: SIGKILL skips the final compaction
    const second = await startEmbeddedProcess({ dataDir: dir });
    await (await connect(second)).db('app').collection<{ _id: string }>('later').insertOne({ _id: 'after' });
    await second.kill();
    await closeClients();

    const file = join(dir, 'snapshot-1.jobd');
    const frames = framesOf(file);
    // the second documents frame of app.b
    const bStart = frames.findIndex((f) => f.tag === Tag.collection && f.docs[0]?.coll === 'b');
    const target = frames[bStart + 2] as Frame;
    expect(target.tag).toBe(Tag.documents);
    const damaged = readFileSync(file);
    for (let i = 0; i < 16; i++) damaged[target.offset + 200 + i] = 0xee;
    writeFileSync(file, damaged);
    const kept = snapshotIdsBefore(frames, target.offset);
    const keptB = kept.get('app.b') as unknown[];
    expect(keptB.length).toBeGreaterThan(0);
    expect(keptB.length).toBeLessThan(100);

    const refused = await expectRefused(dir, file, target.offset);
    expect(refused.output).toContain(`checksum mismatch in frame at offset ${target.offset}`);
    expect(refused.output).toContain(`${100 - keptB.length + 100} of the snapshot's`);

    const repaired = await startRepaired(dir, file, damaged);
    const after = await connect(repaired);
    expect(await ids(after, 'a')).toEqual(range(0, 100));
    expect(await ids(after, 'b')).toEqual(keptB);
    expect(await ids(after, 'c')).toEqual([]);
    expect(await ids(after, 'later')).toEqual(['after']);
    await after.db('app').collection<{ _id: string }>('later').insertOne({ _id: 'after repair' });
    await closeClients();
    expect((await repaired.stop('SIGTERM')).code).toBe(0);

    // healthy now: no --repair needed, nothing lost since the repair
    const healthy = await startEmbeddedProcess({ dataDir: dir });
    expect(healthy.output()).not.toMatch(/damaged|repaired/);
    const last = await connect(healthy);
    expect(await ids(last, 'b')).toEqual(keptB);
    expect(await ids(last, 'later')).toEqual(['after', 'after repair']);
  });

  it('a log with bytes flipped in a frame in the middle, intact frames after it: exit 5; --repair keeps the commands before it', async () => {
    const dir = dataDir();
    const first = await startEmbeddedProcess({ dataDir: dir });
    const jobs = (await connect(first)).db('app').collection<{ _id: number; n: number }>('jobs');
    for (const _id of range(0, 30)) await jobs.insertOne({ _id, n: _id }); // one frame each
    await first.kill();
    await closeClients();

    const file = join(dir, 'log-0.jobd');
    const frames = framesOf(file);
    const target = frames.find((f) =>
      f.docs.some((r) => r.op === 'insert' && (r.doc as Document)._id === 15),
    ) as Frame;
    const damaged = readFileSync(file);
    const flip = target.offset + FRAME_HEADER_BYTES + Math.floor(target.len / 2);
    damaged[flip] = (damaged[flip] as number) ^ 0xff;
    writeFileSync(file, damaged);
    const lastKeptTime = frames
      .filter((f) => f.offset < target.offset)
      .flatMap((f) => f.docs)
      .filter((r) => r.op === 'clock')
      .map((r) => new Date((r.ts as { high: number }).high * 1000).toISOString())
      .pop() as string;

    const refused = await expectRefused(dir, file, target.offset);
    const after = frames.length - frames.indexOf(target) - 1;
    expect(refused.output).toContain(`the damaged frame and ${after} intact frames after it`);
    expect(refused.output).toContain(
      `before it: ${frames.indexOf(target)} intact frames, the last operation at ${lastKeptTime}`,
    );

    const repaired = await startRepaired(dir, file, damaged);
    const client = await connect(repaired);
    expect(await ids(client, 'jobs')).toEqual(range(0, 15));
    await client.db('app').collection<{ _id: number }>('jobs').insertOne({ _id: 100 });
    await closeClients();
    await repaired.kill();

    const healthy = await startEmbeddedProcess({ dataDir: dir });
    expect(await ids(await connect(healthy), 'jobs')).toEqual([...range(0, 15), 100]);
  });

  it('a snapshot frame with a valid checksum over bytes that do not decode (what an oversized document left) has a repair path', async () => {
    const dir = dataDir();
    const first = await startEmbeddedProcess({ dataDir: dir });
    await (
      await connect(first)
    )
      .db('app')
      .collection<{ _id: number }>('jobs')
      .insertMany(range(0, 50).map((_id) => ({ _id })));
    await closeClients();
    expect((await first.stop('SIGTERM')).code).toBe(0);

    const file = join(dir, 'snapshot-1.jobd');
    const target = framesOf(file).find(
      (f) => f.tag === Tag.documents && f.docs.some((d) => d._id === 0),
    ) as Frame;
    const damaged = readFileSync(file);
    const at = target.offset + FRAME_HEADER_BYTES;
    damaged[at + damaged.readInt32LE(at + 1)] = 0x41; // the first document's terminating zero byte
    const payload = damaged.subarray(at, at + target.len);
    damaged.writeUInt32LE(
      crc32(payload, crc32(damaged.subarray(target.offset, target.offset + 4))),
      target.offset + 4,
    );
    writeFileSync(file, damaged);

    const refused = await expectRefused(dir, file, target.offset);
    expect(refused.output).toContain(`unreadable frame at offset ${target.offset}`);
    const repaired = await startRepaired(dir, file, damaged);
    const client = await connect(repaired);
    // every document of app.jobs was in that one frame
    expect(await ids(client, 'jobs')).toEqual([]);
    expect(await client.db('app').listCollections({ name: 'jobs' }).toArray()).toHaveLength(1);
  });

  it('jobctl on a damaged embedded data directory: refused, naming the damage and embedded.repair; JOBD_EMBEDDED__REPAIR=true repairs it', async () => {
    const folder = dataDir();
    const dir = join(folder, 'var', 'db');
    const first = await startEmbeddedProcess({ dataDir: dir });
    const port = first.port;
    const jobs = (await connect(first)).db('jobd').collection<{ _id: number }>('scratch');
    for (const _id of range(0, 5)) await jobs.insertOne({ _id });
    await first.kill();
    await closeClients();
    const file = join(dir, 'log-0.jobd');
    const frames = framesOf(file);
    const target = frames[frames.length - 3] as Frame;
    const damaged = readFileSync(file);
    damaged[target.offset + FRAME_HEADER_BYTES + 2] =
      (damaged[target.offset + FRAME_HEADER_BYTES + 2] as number) ^ 0xff;
    writeFileSync(file, damaged);
    // jobctl opens the folder itself when nothing listens on the configured port (the server is gone)
    const settings = writeSettings({ mongoUri: 'embedded', dataDir: './var', embedded: { port } }, folder);

    const refused = await run('jobctl', ['ping', '--json', '--settings', settings]);
    expect(refused.code).not.toBe(0);
    const said = refused.stdout + refused.stderr;
    expect(said).toContain(
      `data directory ${dir} is damaged: ${file}: checksum mismatch in frame at offset ${target.offset}`,
    );
    expect(said).toContain('embedded.repair: true');
    expect(said).not.toMatch(/another jobd or jobctl/);
    expect(readdirSync(dir).filter((f) => f.includes('.damaged-'))).toEqual([]);

    const repaired = await run('jobctl', ['ping', '--json', '--settings', settings], {
      env: { JOBD_EMBEDDED__REPAIR: 'true' },
    });
    expect(repaired.code, repaired.stdout + repaired.stderr).toBe(0);
    expect(repaired.stderr).toContain(`repaired data directory ${dir}`);
    expect(readdirSync(dir).filter((f) => f.startsWith('log-0.jobd.damaged-'))).toHaveLength(1);
  });
});
