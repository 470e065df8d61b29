/**
 * A bounded wire-protocol fuzz: random and mutated OP_MSG and OP_QUERY frames, over-size lengths, bad
 * BSON, bit flips of valid frames, and legal commands with over-size payloads (see tests/fuzz/wireFuzz.ts).
 * Nothing may crash the server: after each case it still answers (a ping sent after the case, or a new
 * connection when the case closed its own), after each small batch the driver still pings on a fresh
 * client, and the data written before the fuzzing is intact.
 *
 * The seed is printed; JOBD_FUZZ_SEED (and JOBD_FUZZ_CASE for one case) reproduces a run,
 * JOBD_FUZZ_CASES sets how many cases run. `npm run fuzz:embedded` runs a longer fuzz by hand.
 *
 * In this process, against a server of its own, so an unhandled error fails the run; then, shorter,
 * against bin/jobd-embedded with a data directory, to show the process itself survives and, after a
 * SIGTERM and a restart, its data directory holds every acknowledged write.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EJSON } from 'bson';
import { MongoClient, type Document } from 'mongodb';
import { startEmbeddedServer, type EmbeddedServer } from '../../src/embedded/index.js';
import { killAllEmbeddedProcesses, startEmbeddedProcess } from '../helpers/embeddedProcess.js';
import {
  caseIndexes,
  deliver,
  describeCase,
  envCount,
  fuzzSeed,
  generateCase,
  HEAVY_CYCLE,
  HEAVY_EVERY,
  rawPing,
  type FuzzCase,
} from '../fuzz/wireFuzz.js';

const SEED = fuzzSeed();
const CASES = envCount('JOBD_FUZZ_CASES', 150);
const PROCESS_CASES = Math.min(HEAVY_EVERY, Math.max(1, Math.floor(CASES / 6)));
// The process's cases end on the first heavy payload of a new round: an over-size insert.
const PROCESS_FIRST = HEAVY_CYCLE * Math.ceil((CASES + 1) / HEAVY_CYCLE) + HEAVY_EVERY - PROCESS_CASES;
const BATCH = 25;
/** Per case: a hung server fails the case with its description rather than the whole test's timeout. */
const CASE_DEADLINE_MS = 20_000;
const TEST_TIMEOUT_MS = 300_000;
const KEEP_DB = 'intact_data';

console.log(`[wire fuzz] seed ${SEED} (JOBD_FUZZ_SEED=${SEED} reproduces this run)`);

const dirs: string[] = [];
afterAll(async () => {
  await killAllEmbeddedProcesses();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function withClient<T>(uri: string, fn: (client: MongoClient) => Promise<T>): Promise<T> {
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 30_000 });
  try {
    await client.connect();
    return await fn(client);
  } finally {
    await client.close(true);
  }
}

/** Writes the data the fuzzing must not touch, and returns its digest. */
async function seedData(uri: string): Promise<string> {
  return withClient(uri, async (client) => {
    const docs: Document[] = Array.from({ length: 200 }, (_, i) => ({
      _id: i,
      name: `doc-${i}`,
      tags: [i % 3, i % 7],
      nested: { at: new Date(1_700_000_000_000 + i), n: i * 1.5 },
    }));
    await client.db(KEEP_DB).collection('keep').insertMany(docs);
    return digest(client);
  });
}

async function digest(client: MongoClient): Promise<string> {
  const docs = await client
    .db(KEEP_DB)
    .collection('keep')
    .find({}, { sort: { _id: 1 } })
    .toArray();
  expect(docs).toHaveLength(200);
  return createHash('sha256')
    .update(EJSON.stringify(docs, { relaxed: false }))
    .digest('hex');
}

/**
 * Runs the cases against `uri`; after each, a raw ping on a new connection; after each batch, the driver
 * pings on a fresh client, the kept data is compared, and `afterBatch` runs (acknowledged writes).
 */
async function fuzz(
  uri: string,
  indexes: number[],
  expected: string,
  afterBatch: (client: MongoClient) => Promise<void> = async () => {},
): Promise<Record<string, number>> {
  const outcomes: Record<string, number> = {};
  let current: FuzzCase | undefined;
  try {
    for (let at = 0; at < indexes.length; at += BATCH) {
      for (const index of indexes.slice(at, at + BATCH)) {
        current = generateCase(SEED, index);
        const outcome = await deliver(uri, current.bytes, CASE_DEADLINE_MS);
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
        // An answered case ended with the server answering a ping; after a close, ask a new connection.
        if (outcome === 'closed') expect(await rawPing(uri, CASE_DEADLINE_MS)).toBe(true);
      }
      current = undefined;
      await withClient(uri, async (client) => {
        expect(await client.db('admin').command({ ping: 1 })).toMatchObject({ ok: 1 });
        expect(await digest(client)).toBe(expected);
        await afterBatch(client);
      });
    }
  } catch (err) {
    const where = current ? describeCase(current) : `seed ${SEED}, after a batch`;
    throw new Error(`wire fuzz failed at ${where}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
  return outcomes;
}

describe('wire fuzz', () => {
  it(
    `survives ${CASES} fuzz cases in process, with the data written before intact`,
    async () => {
      const lines: string[] = [];
      const server: EmbeddedServer = await startEmbeddedServer({ log: (m) => lines.push(m) });
      try {
        const expected = await seedData(server.uri);
        const outcomes = await fuzz(server.uri, caseIndexes(CASES), expected);
        console.log(`[wire fuzz] in process: ${JSON.stringify(outcomes)}`);
        // A fault in the wire layer itself (not in a command) would have cut a connection unasked.
        expect(lines.filter((l) => /unexpected error while serving/.test(l))).toEqual([]);
      } finally {
        await server.close();
      }
    },
    TEST_TIMEOUT_MS,
  );

  it(
    `bin/jobd-embedded survives ${PROCESS_CASES} cases, and after SIGTERM and a restart holds every acknowledged write`,
    async () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'jobd-fuzz-'));
      dirs.push(dataDir);
      const server = await startEmbeddedProcess({ dataDir });
      const expected = await seedData(server.uri);
      const acked: number[] = [];
      let n = 0;
      await fuzz(server.uri, caseIndexes(PROCESS_CASES, PROCESS_FIRST), expected, async (client) => {
        const id = n++;
        await client
          .db(KEEP_DB)
          .collection('acks')
          .insertOne({ _id: id } as Document);
        acked.push(id);
      });
      const exit = await server.stop('SIGTERM');
      expect(exit.code).toBe(0);
      expect(exit.output).not.toMatch(/uncaught|unhandled/i);

      const again = await startEmbeddedProcess({ dataDir });
      try {
        await withClient(again.uri, async (client) => {
          expect(await digest(client)).toBe(expected);
          const acks = await client
            .db(KEEP_DB)
            .collection('acks')
            .find({}, { sort: { _id: 1 } })
            .toArray();
          expect(acks.map((d) => d._id)).toEqual(acked);
        });
      } finally {
        await again.stop('SIGTERM');
      }
    },
    TEST_TIMEOUT_MS,
  );
});
