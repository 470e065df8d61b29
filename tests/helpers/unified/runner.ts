/**
 * Executes unified-format test cases against one server: initialData, createEntities, operations with
 * their expectResult/expectError, expectEvents (command monitoring of the case's own clients), then
 * outcome. Every wait is bounded. A case passes only when something was asserted: a case whose
 * operations merely ran without an error proves nothing, and is reported as a failure.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { BSON, MongoServerError, type MongoClient, type Document } from 'mongodb';
import type { CollectionData, Operation, TestCase, TestFile } from './types.js';
import { EntityMap, UnsupportedCase } from './entities.js';
import { MatchError, matchExactDocuments, matchRootDocuments, matchValue } from './match.js';
import { runEntityOperation, type OperationContext } from './operations.js';
import { checkError } from './expectedError.js';
import { parseVersion, requirementsUnmet, type ServerInfo } from './requirements.js';
import { DbNames } from './dbNames.js';
import { COMMAND_EVENT_TYPES, countMatching, matchEvents, type ExpectedEventsForClient } from './events.js';

const { EJSON } = BSON;

/** The unified format versions this runner reads: major 1, up to this minor. */
const SUPPORTED_SCHEMA: [number, number] = [1, 26];

/** Operations whose result is an iterable of root-level documents (each may carry extra fields). */
const ITERABLE_RESULTS = new Set([
  'find',
  'aggregate',
  'listCollections',
  'listIndexes',
  'listDatabases',
  'runCursorCommand',
]);

export interface LoadedFile {
  name: string;
  data: TestFile;
}

export function loadSpecFiles(dir: string): LoadedFile[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((name) => ({
      name,
      data: EJSON.parse(readFileSync(path.join(dir, name), 'utf8'), { relaxed: true }) as TestFile,
    }));
}

export class SkipCase extends Error {
  override name = 'SkipCase';
}

const TEST_RUNNER_OPS = new Set([
  'assertCollectionExists',
  'assertCollectionNotExists',
  'assertIndexExists',
  'assertIndexNotExists',
  'waitForEvent',
  'assertEventCount',
]);

/**
 * Cases whose expectations are about what the driver sends and that the official Node driver (6.x)
 * does not send that way; the server never sees the difference. Each is checked in the driver's source.
 */
const DRIVER_DEVIATIONS: { file: string; description: RegExp; reason: string }[] = [
  {
    file: 'bypassDocumentValidation.json',
    description:
      /^(Aggregate with \$out|BulkWrite|FindOneAndReplace|FindOneAndUpdate|InsertMany) passes bypassDocumentValidation: false$/,
    reason:
      'the Node driver sends bypassDocumentValidation only when true for aggregate, findAndModify and bulk writes',
  },
];

/** How long one wait (an iteration, waitForEvent) may take: the format's own bound for waitForEvent. */
export const DEFAULT_WAIT_MS = 10_000;

export interface CaseResult {
  /** How many expectations were checked (results, errors, event lists, outcomes, runner assertions). */
  assertions: number;
}

export class SpecRunner {
  readonly names = new DbNames();

  constructor(
    private readonly uri: string,
    private readonly server: ServerInfo,
    private readonly internal: MongoClient,
    private readonly waitMs = DEFAULT_WAIT_MS,
  ) {}

  private mapDb = (name: string): string => this.names.map(name);

  /** Why a case does not apply here, decided before running it; undefined when it applies. */
  async skipReason(file: TestFile, test: TestCase, fileName = ''): Promise<string | undefined> {
    const [major, minor] = parseVersion(file.schemaVersion);
    if (major !== SUPPORTED_SCHEMA[0] || minor > SUPPORTED_SCHEMA[1]) {
      throw new Error(`schemaVersion ${file.schemaVersion} is not supported by this runner`);
    }
    if (test.skipReason) return `case marked skip: ${test.skipReason}`;
    const deviation = DRIVER_DEVIATIONS.find(
      (d) => d.file === fileName && d.description.test(test.description),
    );
    if (deviation) return `driver deviation: ${deviation.reason}`;
    const fileUnmet = await requirementsUnmet(file.runOnRequirements, this.server);
    if (fileUnmet) return `runOnRequirements: ${fileUnmet}`;
    const testUnmet = await requirementsUnmet(test.runOnRequirements, this.server);
    if (testUnmet) return `runOnRequirements: ${testUnmet}`;
    for (const op of test.operations) {
      if (op.object !== 'testRunner') continue;
      if (op.name === 'failPoint' || op.name === 'targetedFailPoint')
        return 'uses fail points (configureFailPoint test command)';
      if (!TEST_RUNNER_OPS.has(op.name))
        return `testRunner operation ${op.name} is not mapped by this runner`;
    }
    for (const expected of (test.expectEvents ?? []) as ExpectedEventsForClient[]) {
      if ((expected.eventType ?? 'command') !== 'command')
        return `expectEvents of type ${expected.eventType} (only command monitoring is observed)`;
    }
    if (test.expectLogMessages) return 'expectLogMessages (log messages are not observed)';
    if (test.expectTracingMessages) return 'expectTracingMessages (tracing is not observed)';
    return undefined;
  }

  /**
   * Runs one case. Throws MatchError/assertion errors on failure, SkipCase when the case uses
   * something this runner cannot map. Returns how many expectations were checked.
   */
  async run(file: TestFile, test: TestCase): Promise<CaseResult> {
    const result: CaseResult = { assertions: 0 };
    for (const data of file.initialData ?? []) await this.seed(data);

    const entities = new EntityMap();
    const ctx: OperationContext = {
      entities,
      mapDb: this.mapDb,
      ownsDb: (name) => this.names.owns(name),
      waitMs: this.waitMs,
    };
    try {
      try {
        await entities.create(file.createEntities ?? [], this.uri, this.names);
      } catch (err) {
        if (err instanceof UnsupportedCase) throw new SkipCase(err.message);
        throw err;
      }
      for (const [i, op] of test.operations.entries()) {
        try {
          result.assertions += await this.runOperation(op, ctx);
        } catch (err) {
          if (err instanceof UnsupportedCase) throw new SkipCase(err.message);
          if (err instanceof Error) err.message = `operation #${i} ${op.object}.${op.name}: ${err.message}`;
          throw err;
        }
      }
      entities.stopRecording();
      for (const expected of (test.expectEvents ?? []) as ExpectedEventsForClient[]) {
        const recorder = entities.recorders.get(expected.client);
        if (!recorder)
          throw new MatchError(`expectEvents: client ${expected.client} observes no events (observeEvents)`);
        matchEvents(expected, recorder.events, this.names, entities);
        result.assertions++;
      }
    } finally {
      await entities.dispose();
    }

    for (const expected of test.outcome ?? []) {
      const actual = await this.internal
        .db(this.mapDb(expected.databaseName))
        .collection(expected.collectionName)
        .find({}, { sort: { _id: 1 }, readPreference: 'primary', readConcern: { level: 'local' } })
        .toArray();
      matchExactDocuments(
        expected.documents,
        actual,
        `outcome ${expected.databaseName}.${expected.collectionName}`,
      );
      result.assertions++;
    }
    return result;
  }

  private async seed(data: CollectionData): Promise<void> {
    const db = this.internal.db(this.mapDb(data.databaseName));
    const majority = { writeConcern: { w: 'majority' as const } };
    for (const name of [
      data.collectionName,
      `enxcol_.${data.collectionName}.esc`,
      `enxcol_.${data.collectionName}.ecoc`,
    ]) {
      try {
        await db.collection(name).drop(majority);
      } catch (err) {
        if (!(err instanceof MongoServerError && err.code === 26)) throw err;
      }
    }
    if (data.createOptions || data.documents.length === 0) {
      await db.createCollection(data.collectionName, { ...(data.createOptions ?? {}), ...majority });
    }
    if (data.documents.length > 0)
      await db.collection(data.collectionName).insertMany(data.documents, majority);
  }

  /** Runs one operation and checks its expectations; returns how many were checked. */
  private async runOperation(op: Operation, ctx: OperationContext): Promise<number> {
    if (op.object === 'testRunner') return this.testRunnerOperation(op, ctx);
    let result: unknown;
    let error: unknown;
    let threw = false;
    try {
      result = await runEntityOperation(op.object, op.name, op.arguments, ctx);
    } catch (err) {
      if (err instanceof UnsupportedCase) throw err;
      threw = true;
      error = err;
    }
    if (op.ignoreResultAndError) return 0;

    let checked = 0;
    if (op.expectError) {
      if (!threw) throw new MatchError(`expected an error, got result ${safeJson(result)}`);
      checkError(op.expectError, error, this.names, ctx.entities);
      checked++;
    } else if (threw) {
      throw error;
    }

    if ('expectResult' in op) {
      const actual = this.names.unmap(result);
      if (ITERABLE_RESULTS.has(op.name))
        matchRootDocuments(op.expectResult, actual, { entities: ctx.entities });
      else matchValue(op.expectResult, actual, '', { root: true, entities: ctx.entities });
      checked++;
    }
    if (op.saveResultAsEntity) ctx.entities.set(op.saveResultAsEntity, result);
    return checked;
  }

  /** A special operation of the test runner; every one of them is an assertion (or a bounded wait). */
  private async testRunnerOperation(op: Operation, ctx: OperationContext): Promise<number> {
    const args = op.arguments ?? {};
    if (op.name === 'waitForEvent' || op.name === 'assertEventCount') {
      const recorder = ctx.entities.recorders.get(String(args.client));
      if (!recorder) throw new MatchError(`${op.name}: client ${String(args.client)} observes no events`);
      const event = args.event as Document;
      if (!COMMAND_EVENT_TYPES.includes(Object.keys(event)[0] as string))
        throw new UnsupportedCase(
          `${op.name} for ${Object.keys(event)[0]} (only command events are observed)`,
        );
      const count = (): number => countMatching(event, recorder.events, this.names, ctx.entities);
      if (op.name === 'assertEventCount') {
        if (count() !== Number(args.count))
          throw new MatchError(`assertEventCount: expected ${String(args.count)}, observed ${count()}`);
        return 1;
      }
      const deadline = Date.now() + this.waitMs;
      while (count() < Number(args.count)) {
        if (Date.now() > deadline)
          throw new MatchError(
            `waitForEvent: ${count()} of ${String(args.count)} matching event(s) within ${this.waitMs} ms`,
          );
        await new Promise((r) => setTimeout(r, 20));
      }
      return 1;
    }
    const db = this.internal.db(this.mapDb(String(args.databaseName)));
    switch (op.name) {
      case 'assertCollectionExists':
      case 'assertCollectionNotExists': {
        const names = (await db.listCollections({}, { nameOnly: true }).toArray()).map((c) => c.name);
        const exists = names.includes(String(args.collectionName));
        if (exists !== (op.name === 'assertCollectionExists'))
          throw new MatchError(
            `${op.name} ${String(args.collectionName)}: collections are ${JSON.stringify(names)}`,
          );
        return 1;
      }
      case 'assertIndexExists':
      case 'assertIndexNotExists': {
        let names: string[] = [];
        try {
          names = (await db.collection(String(args.collectionName)).listIndexes().toArray()).map((i) =>
            String(i.name),
          );
        } catch (err) {
          if (!(err instanceof MongoServerError && err.code === 26)) throw err;
        }
        const exists = names.includes(String(args.indexName));
        if (exists !== (op.name === 'assertIndexExists'))
          throw new MatchError(`${op.name} ${String(args.indexName)}: indexes are ${JSON.stringify(names)}`);
        return 1;
      }
      default:
        throw new UnsupportedCase(`testRunner operation ${op.name} is not mapped by this runner`);
    }
  }

  /** Drops the databases this run created. */
  async close(): Promise<void> {
    for (const name of this.names.used) {
      try {
        await this.internal.db(name).dropDatabase();
      } catch {
        // Best effort: a leftover database only costs space on the test server.
      }
    }
  }
}

function safeJson(value: unknown): string {
  try {
    return EJSON.stringify(value as Document, { relaxed: true });
  } catch {
    return String(value);
  }
}
