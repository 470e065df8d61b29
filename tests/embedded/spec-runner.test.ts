/**
 * The spec runner itself, on small hand-written cases against the test backend: it must not report a
 * case as passed without checking something, must check expectEvents, must match namespaces as the
 * case file names them, and must bound every wait.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { MongoClient, type Document } from 'mongodb';
import { SpecRunner } from '../helpers/unified/runner.js';
import { describeServer } from '../helpers/unified/requirements.js';
import { MatchError } from '../helpers/unified/match.js';
import type { TestCase, TestFile } from '../helpers/unified/types.js';

let internal: MongoClient;
let runner: SpecRunner;
/** A runner whose waits give up after a short time, for the cases that wait on purpose. */
let impatient: SpecRunner;

beforeAll(async () => {
  const uri = inject('mongoUri');
  internal = new MongoClient(uri, { serverSelectionTimeoutMS: 10_000 });
  await internal.connect();
  const server = await describeServer(internal.db('admin'));
  runner = new SpecRunner(uri, server, internal);
  impatient = new SpecRunner(uri, server, internal, 500);
});

afterAll(async () => {
  await runner?.close();
  await impatient?.close();
  await internal?.close();
});

function file(tests: TestCase[]): TestFile {
  return {
    description: 'runner self-test',
    schemaVersion: '1.7',
    createEntities: [
      {
        client: {
          id: 'client0',
          observeEvents: ['commandStartedEvent'],
          ignoreCommandMonitoringEvents: ['killCursors'],
        },
      },
      { database: { id: 'database0', client: 'client0', databaseName: 'database0' } },
      { collection: { id: 'collection0', database: 'database0', collectionName: 'coll0' } },
    ],
    initialData: [{ collectionName: 'coll0', databaseName: 'database0', documents: [] }],
    tests,
  };
}

const insert = (doc: Document) => ({
  name: 'insertOne',
  object: 'collection0',
  arguments: { document: doc },
});

describe('spec runner', () => {
  it('reports how many expectations a case checked, and none for a case that expects nothing', async () => {
    const data = file([{ description: 'nothing', operations: [insert({ _id: 1 })] }]);
    const silent = await runner.run(data, data.tests[0] as TestCase);
    expect(silent.assertions).toBe(0);

    const checked = file([
      {
        description: 'something',
        operations: [{ ...insert({ _id: 1 }), expectResult: { insertedId: 1 } }],
        outcome: [{ collectionName: 'coll0', databaseName: 'database0', documents: [{ _id: 1 }] }],
      },
    ]);
    expect((await runner.run(checked, checked.tests[0] as TestCase)).assertions).toBe(2);
  });

  it('checks expectEvents: the commands the case sent, their order and their number', async () => {
    const events = (expected: Document[], ignoreExtraEvents = false) =>
      file([
        {
          description: 'events',
          operations: [
            insert({ _id: 1 }),
            { name: 'deleteOne', object: 'collection0', arguments: { filter: { _id: 1 } } },
          ],
          expectEvents: [{ client: 'client0', ignoreExtraEvents, events: expected }],
        },
      ]);
    const started = (command: Document, databaseName = 'database0') => ({
      commandStartedEvent: { command, databaseName },
    });
    const right = events([
      started({ insert: 'coll0', documents: [{ _id: 1 }] }),
      started({ delete: 'coll0', deletes: [{ q: { _id: 1 }, limit: 1 }] }),
    ]);
    expect((await runner.run(right, right.tests[0] as TestCase)).assertions).toBe(1);

    const wrongOrder = events([started({ delete: 'coll0' }), started({ insert: 'coll0' })]);
    await expect(runner.run(wrongOrder, wrongOrder.tests[0] as TestCase)).rejects.toThrow(MatchError);
    const tooFew = events([started({ insert: 'coll0' })]);
    await expect(runner.run(tooFew, tooFew.tests[0] as TestCase)).rejects.toThrow(/expected 1 event/);
    const extraAllowed = events([started({ insert: 'coll0' })], true);
    expect((await runner.run(extraAllowed, extraAllowed.tests[0] as TestCase)).assertions).toBe(1);
    const otherDb = events([started({ insert: 'coll0' }, 'database1')], true);
    await expect(runner.run(otherDb, otherDb.tests[0] as TestCase)).rejects.toThrow(/databaseName/);
  });

  it("matches change events' namespaces as the case file names its databases", async () => {
    const data = file([
      {
        description: 'ns',
        operations: [
          {
            name: 'createChangeStream',
            object: 'collection0',
            arguments: { pipeline: [] },
            saveResultAsEntity: 'changeStream0',
          },
          insert({ _id: 'x' }),
          {
            name: 'iterateUntilDocumentOrError',
            object: 'changeStream0',
            expectResult: { operationType: 'insert', ns: { db: 'database0', coll: 'coll0' } },
          },
        ],
      },
    ]);
    expect((await runner.run(data, data.tests[0] as TestCase)).assertions).toBe(1);
  });

  it('gives up on an event that never comes within its bound, and the next case is unaffected', async () => {
    const waiting = file([
      {
        description: 'no event',
        operations: [
          {
            name: 'createChangeStream',
            object: 'collection0',
            arguments: { pipeline: [] },
            saveResultAsEntity: 'changeStream0',
          },
          {
            name: 'iterateUntilDocumentOrError',
            object: 'changeStream0',
            expectResult: { operationType: 'insert' },
          },
        ],
      },
    ]);
    const started = Date.now();
    await expect(impatient.run(waiting, waiting.tests[0] as TestCase)).rejects.toThrow(
      /nothing within 500 ms/,
    );
    expect(Date.now() - started).toBeLessThan(15_000);

    const next = file([
      {
        description: 'own event only',
        operations: [
          {
            name: 'createChangeStream',
            object: 'collection0',
            arguments: { pipeline: [] },
            saveResultAsEntity: 'changeStream0',
          },
          insert({ _id: 'mine' }),
          {
            name: 'iterateUntilDocumentOrError',
            object: 'changeStream0',
            expectResult: { operationType: 'insert', documentKey: { _id: 'mine' } },
          },
        ],
        expectEvents: [
          {
            client: 'client0',
            events: [
              { commandStartedEvent: { commandName: 'aggregate' } },
              { commandStartedEvent: { commandName: 'insert' } },
              { commandStartedEvent: { commandName: 'getMore' } },
            ],
          },
        ],
      },
    ]);
    expect((await impatient.run(next, next.tests[0] as TestCase)).assertions).toBe(2);
  });
});
