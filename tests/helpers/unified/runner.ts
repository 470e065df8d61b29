/**
 * Executes unified-format test cases against one server: initialData, createEntities, operations with
 * their expectResult/expectError, then outcome. Command-monitoring expectations (expectEvents) are
 * not checked: they describe what the driver sends, not what the server answers.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { BSON, MongoBulkWriteError, MongoServerError, type MongoClient, type Document } from 'mongodb';
import type { CollectionData, ExpectedError, Operation, TestCase, TestFile } from './types.js';
import { ClientPool, EntityMap, UnsupportedCase } from './entities.js';
import { MatchError, matchExactDocuments, matchRootDocuments, matchValue } from './match.js';
import {
  bulkWriteResultDoc,
  clientBulkWriteResultDoc,
  runEntityOperation,
  type OperationContext,
} from './operations.js';
import { parseVersion, requirementsUnmet, type ServerInfo } from './requirements.js';

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

/** Code names used by the case files, for errors that carry a code but no codeName (write errors). */
const CODE_NAMES: Record<string, number> = {
  BadValue: 2,
  FailedToParse: 9,
  TypeMismatch: 14,
  InvalidOptions: 72,
  NamespaceNotFound: 26,
  IndexNotFound: 27,
  CommandNotFound: 59,
  ImmutableField: 66,
  InvalidNamespace: 73,
  DocumentValidationFailure: 121,
  WriteConcernFailed: 64,
  DuplicateKey: 11000,
  UnknownReplWriteConcern: 79,
  MaxTimeMSExpired: 50,
  Location40324: 40324,
  Location40352: 40352,
};

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
]);

export class SpecRunner {
  private readonly suffix = `${randomBytes(3).toString('hex')}`;
  private readonly usedDbs = new Set<string>();
  private readonly pool: ClientPool;

  constructor(
    uri: string,
    private readonly server: ServerInfo,
    private readonly internal: MongoClient,
  ) {
    this.pool = new ClientPool(uri);
  }

  /** Case databases get a per-run suffix so concurrent runs against one server do not collide. */
  mapDb = (name: string): string => {
    if (name === 'admin' || name === 'config' || name === 'local') return name;
    const mapped = `${name}_${this.suffix}`;
    this.usedDbs.add(mapped);
    return mapped;
  };

  /** Why a case does not apply here, decided before running it; undefined when it applies. */
  async skipReason(file: TestFile, test: TestCase): Promise<string | undefined> {
    const [major, minor] = parseVersion(file.schemaVersion);
    if (major !== SUPPORTED_SCHEMA[0] || minor > SUPPORTED_SCHEMA[1]) {
      throw new Error(`schemaVersion ${file.schemaVersion} is not supported by this runner`);
    }
    if (test.skipReason) return `case marked skip: ${test.skipReason}`;
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
    return undefined;
  }

  /**
   * Runs one case. Throws MatchError/assertion errors on failure, SkipCase when the case uses
   * something this runner cannot map. Returns notes (e.g. unchecked expectEvents).
   */
  async run(file: TestFile, test: TestCase): Promise<string[]> {
    const notes: string[] = [];
    if (test.expectEvents) notes.push('expectEvents (command monitoring) not checked');

    for (const data of file.initialData ?? []) await this.seed(data);

    const entities = new EntityMap();
    const ctx: OperationContext = { entities, mapDb: this.mapDb };
    try {
      try {
        await entities.create(file.createEntities ?? [], this.pool, this.mapDb);
      } catch (err) {
        if (err instanceof UnsupportedCase) throw new SkipCase(err.message);
        throw err;
      }
      for (const [i, op] of test.operations.entries()) {
        try {
          await this.runOperation(op, ctx);
        } catch (err) {
          if (err instanceof UnsupportedCase) throw new SkipCase(err.message);
          if (err instanceof Error) err.message = `operation #${i} ${op.object}.${op.name}: ${err.message}`;
          throw err;
        }
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
    }
    return notes;
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

  private async runOperation(op: Operation, ctx: OperationContext): Promise<void> {
    if (op.object === 'testRunner') {
      await this.testRunnerOperation(op);
      return;
    }
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
    if (op.ignoreResultAndError) return;

    if (op.expectError) {
      if (!threw) throw new MatchError(`expected an error, got result ${safeJson(result)}`);
      this.checkError(op.expectError, error, ctx);
    } else if (threw) {
      throw error;
    }

    if ('expectResult' in op) {
      if (ITERABLE_RESULTS.has(op.name))
        matchRootDocuments(op.expectResult, result, { entities: ctx.entities });
      else matchValue(op.expectResult, result, '', { root: true, entities: ctx.entities });
    }
    if (op.saveResultAsEntity) ctx.entities.set(op.saveResultAsEntity, result);
  }

  private checkError(expected: ExpectedError, error: unknown, ctx: OperationContext): void {
    const err = error as Document;
    const server = error instanceof MongoServerError;
    const describe = `${err?.name ?? 'Error'}: ${err?.message ?? String(error)}`;
    if (expected.isClientError === true && server)
      throw new MatchError(`expected a client-side error, got server error ${describe}`);
    if (expected.isClientError === false && !server)
      throw new MatchError(`expected a server error, got ${describe}`);
    if (expected.isTimeoutError !== undefined) {
      const timeout = err?.name === 'MongoOperationTimeoutError';
      if (timeout !== expected.isTimeoutError)
        throw new MatchError(`expected isTimeoutError=${expected.isTimeoutError}, got ${describe}`);
    }

    const writeErrors: Document[] = Array.isArray(err?.writeErrors)
      ? (err.writeErrors as Document[])
      : err?.writeErrors instanceof Map
        ? [...(err.writeErrors as Map<number, Document>).values()]
        : [];
    const wce: Document[] = [
      err?.writeConcernError,
      ...(Array.isArray(err?.writeConcernErrors) ? err.writeConcernErrors : []),
    ].filter(Boolean);
    const parts: Document[] = [err ?? {}, ...writeErrors, ...wce];

    if (expected.errorContains !== undefined) {
      const needle = expected.errorContains.toLowerCase();
      const messages = parts
        .flatMap((p) => [p.message, p.errmsg, p.errMsg])
        .filter((m): m is string => typeof m === 'string');
      if (!messages.some((m) => m.toLowerCase().includes(needle))) {
        throw new MatchError(
          `expected error message containing "${expected.errorContains}", got ${JSON.stringify(messages)}`,
        );
      }
    }
    if (expected.errorCode !== undefined) {
      const codes = parts.map((p) => p.code);
      if (!server || !codes.includes(expected.errorCode))
        throw new MatchError(
          `expected error code ${expected.errorCode}, got ${describe} (codes ${JSON.stringify(codes)})`,
        );
    }
    if (expected.errorCodeName !== undefined) {
      const want = expected.errorCodeName.toLowerCase();
      const names = parts
        .map((p) => p.codeName)
        .filter((n): n is string => typeof n === 'string')
        .map((n) => n.toLowerCase());
      const byCode = Object.entries(CODE_NAMES).find(([n]) => n.toLowerCase() === want)?.[1];
      const ok =
        server && (names.includes(want) || (byCode !== undefined && parts.some((p) => p.code === byCode)));
      if (!ok) throw new MatchError(`expected error codeName ${expected.errorCodeName}, got ${describe}`);
    }
    const hasLabel = (label: string) =>
      typeof err?.hasErrorLabel === 'function'
        ? Boolean(err.hasErrorLabel(label))
        : Array.isArray(err?.errorLabels) && err.errorLabels.includes(label);
    for (const label of expected.errorLabelsContain ?? []) {
      if (!hasLabel(label)) throw new MatchError(`expected error label ${label} on ${describe}`);
    }
    for (const label of expected.errorLabelsOmit ?? []) {
      if (hasLabel(label)) throw new MatchError(`expected no error label ${label} on ${describe}`);
    }
    if (expected.errorResponse !== undefined) {
      const response = err?.errorResponse ?? (server ? err : undefined);
      if (!response) throw new MatchError(`expected an error with a server response, got ${describe}`);
      matchValue(expected.errorResponse, response, 'errorResponse', { root: true, entities: ctx.entities });
    }
    if (expected.writeErrors !== undefined) {
      const actual = err?.writeErrors instanceof Map ? (err.writeErrors as Map<number, Document>) : undefined;
      if (!actual) throw new MatchError(`expected writeErrors on ${describe}`);
      const expectedKeys = Object.keys(expected.writeErrors);
      for (const key of expectedKeys) {
        const we = actual.get(Number(key));
        if (!we) throw new MatchError(`expected a write error at index ${key}`);
        matchValue(expected.writeErrors[key], { ...we }, `writeErrors.${key}`, {
          root: true,
          entities: ctx.entities,
        });
      }
      const extra = [...actual.keys()].filter((k) => !expectedKeys.includes(String(k)));
      if (extra.length > 0) throw new MatchError(`unexpected write errors at index(es) ${extra.join(', ')}`);
    }
    if (expected.writeConcernErrors !== undefined) {
      const actual = Array.isArray(err?.writeConcernErrors) ? (err.writeConcernErrors as Document[]) : [];
      if (actual.length !== expected.writeConcernErrors.length)
        throw new MatchError(
          `expected ${expected.writeConcernErrors.length} write concern error(s), got ${actual.length}`,
        );
      expected.writeConcernErrors.forEach((e, i) =>
        matchValue(e, actual[i], `writeConcernErrors[${i}]`, { root: true, entities: ctx.entities }),
      );
    }
    if ('expectResult' in expected) {
      let partial: unknown;
      if (error instanceof MongoBulkWriteError) partial = bulkWriteResultDoc(error.result);
      else if (err?.partialResult) partial = clientBulkWriteResultDoc(err.partialResult as Document);
      matchValue(expected.expectResult, partial, 'error result', { root: true, entities: ctx.entities });
    }
  }

  private async testRunnerOperation(op: Operation): Promise<void> {
    const args = op.arguments ?? {};
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
        return;
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
        return;
      }
      default:
        throw new UnsupportedCase(`testRunner operation ${op.name} is not mapped by this runner`);
    }
  }

  /** Drops the databases this run created and closes pooled clients. */
  async close(): Promise<void> {
    for (const name of this.usedDbs) {
      try {
        await this.internal.db(name).dropDatabase();
      } catch {
        // Best effort: a leftover database only costs space on the test server.
      }
    }
    await this.pool.closeAll();
  }
}

function safeJson(value: unknown): string {
  try {
    return EJSON.stringify(value as Document, { relaxed: true });
  } catch {
    return String(value);
  }
}
