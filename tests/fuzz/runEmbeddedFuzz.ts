/**
 * The long wire fuzz, run by hand: `npm run fuzz:embedded` (not part of `npm test`).
 *
 * Fuzzes bin/jobd-embedded (the compiled dist/) as a separate process for JOBD_FUZZ_SECONDS (default
 * 120) or JOBD_FUZZ_CASES cases, whichever ends first; JOBD_FUZZ_SEED picks the seed, JOBD_FUZZ_DATA_DIR=1
 * runs the server on a data directory. After every case the server must answer a new connection; every
 * 50 cases the driver pings and the data written before the fuzzing is compared. A crash (the process
 * gone, a case unanswered, the data changed) is counted with the case that caused it, and the server is
 * started again to go on. Prints one JSON object: seed, cases run, crashes found, seconds.
 * Exits 1 when a crash was found.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EJSON } from 'bson';
import { MongoClient, type Document } from 'mongodb';
import { startEmbeddedProcess, type EmbeddedProcess } from '../helpers/embeddedProcess.js';
import { FUZZ_DB, deliver, describeCase, envCount, fuzzSeed, generateCase, rawPing } from './wireFuzz.js';

const KEEP_DB = 'intact_data';
const CHECK_EVERY = 50;

async function withClient<T>(uri: string, fn: (client: MongoClient) => Promise<T>): Promise<T> {
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 30_000 });
  try {
    await client.connect();
    return await fn(client);
  } finally {
    await client.close(true);
  }
}

async function digest(uri: string): Promise<string> {
  return withClient(uri, async (client) => {
    const docs = await client
      .db(KEEP_DB)
      .collection('keep')
      .find({}, { sort: { _id: 1 } })
      .toArray();
    return createHash('sha256')
      .update(EJSON.stringify(docs, { relaxed: false }))
      .digest('hex');
  });
}

async function start(dataDir: string | undefined): Promise<{ server: EmbeddedProcess; expected: string }> {
  const server = await startEmbeddedProcess(dataDir ? { dataDir } : {});
  await withClient(server.uri, async (client) => {
    const keep = client.db(KEEP_DB).collection('keep');
    if ((await keep.countDocuments()) === 0) {
      const docs: Document[] = Array.from({ length: 200 }, (_, i) => ({
        _id: i,
        name: `doc-${i}`,
        at: new Date(i),
      }));
      await keep.insertMany(docs);
    }
    // A fresh start of the fuzzed database, so one crash's leftovers do not weigh on the rest.
    await client.db(FUZZ_DB).dropDatabase();
  });
  return { server, expected: await digest(server.uri) };
}

async function main(): Promise<void> {
  const seed = fuzzSeed();
  const seconds = envCount('JOBD_FUZZ_SECONDS', 120);
  const maxCases = envCount('JOBD_FUZZ_CASES', Number.MAX_SAFE_INTEGER);
  const dataDir =
    process.env.JOBD_FUZZ_DATA_DIR === '1' ? mkdtempSync(join(tmpdir(), 'jobd-fuzz-')) : undefined;
  const started = Date.now();
  const crashes: string[] = [];
  let internalErrors = 0;
  let cases = 0;
  let { server, expected } = await start(dataDir);

  const crashed = async (what: string): Promise<void> => {
    crashes.push(what);
    console.error(`[fuzz] crash: ${what}`);
    await server.kill();
    internalErrors += countInternalErrors(server.output());
    ({ server, expected } = await start(dataDir));
  };

  try {
    for (let index = 0; index < maxCases && Date.now() - started < seconds * 1000; index++) {
      const c = generateCase(seed, index);
      cases++;
      try {
        await deliver(server.uri, c.bytes);
        if (!(await rawPing(server.uri))) throw new Error('ping not ok');
        if (index % CHECK_EVERY === CHECK_EVERY - 1) {
          const now = await digest(server.uri);
          if (now !== expected) throw new Error('the data written before the fuzzing changed');
        }
      } catch (err) {
        const exited = server.child.exitCode !== null || server.child.signalCode !== null;
        await crashed(
          `${describeCase(c)}: ${exited ? 'the server process exited' : err instanceof Error ? err.message : String(err)}`,
        );
      }
    }
    const exit = await server.stop('SIGTERM');
    internalErrors += countInternalErrors(exit.output);
    if (exit.code !== 0)
      crashes.push(
        `SIGTERM after the fuzzing: exit ${exit.signal ?? exit.code}; ${exit.output.slice(-2000)}`,
      );
  } finally {
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  }
  const result = {
    seed,
    cases,
    crashes: crashes.length,
    crashCases: crashes,
    internalErrors,
    dataDir: dataDir !== undefined,
    seconds: Math.round((Date.now() - started) / 100) / 10,
  };
  console.log(JSON.stringify(result, null, 2));
  if (crashes.length > 0) process.exitCode = 1;
}

/** Commands that met a fault (answered with InternalError, logged by the server). */
function countInternalErrors(output: string): number {
  return output.split('\n').filter((l) => /failed with an internal error/.test(l)).length;
}

await main();
