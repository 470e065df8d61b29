/**
 * expectError of the unified test format: what kind of error an operation failed with, its code,
 * codeName, labels, message, server response, write errors and partial result. Messages and responses
 * are compared with database names as the case file spells them.
 */
import { MongoBulkWriteError, MongoServerError, type Document } from 'mongodb';
import type { ExpectedError } from './types.js';
import { MatchError, matchValue, type EntityLookup } from './match.js';
import { bulkWriteResultDoc, clientBulkWriteResultDoc } from './operations.js';
import type { DbNames } from './dbNames.js';

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

/** Asserts that `error` is the error `expected` describes; throws MatchError otherwise. */
export function checkError(
  expected: ExpectedError,
  error: unknown,
  names: DbNames,
  entities: EntityLookup,
): void {
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
      .filter((m): m is string => typeof m === 'string')
      .map((m) => names.unmapString(m));
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
    matchValue(expected.errorResponse, names.unmap({ ...(response as Document) }), 'errorResponse', {
      root: true,
      entities,
    });
  }
  if (expected.writeErrors !== undefined) {
    const actual = err?.writeErrors instanceof Map ? (err.writeErrors as Map<number, Document>) : undefined;
    if (!actual) throw new MatchError(`expected writeErrors on ${describe}`);
    const expectedKeys = Object.keys(expected.writeErrors);
    for (const key of expectedKeys) {
      const we = actual.get(Number(key));
      if (!we) throw new MatchError(`expected a write error at index ${key}`);
      matchValue(expected.writeErrors[key], names.unmap({ ...we }), `writeErrors.${key}`, {
        root: true,
        entities,
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
      matchValue(e, actual[i], `writeConcernErrors[${i}]`, { root: true, entities }),
    );
  }
  if ('expectResult' in expected) {
    let partial: unknown;
    if (error instanceof MongoBulkWriteError) partial = bulkWriteResultDoc(error.result);
    else if (err?.partialResult) partial = clientBulkWriteResultDoc(err.partialResult as Document);
    matchValue(expected.expectResult, partial, 'error result', { root: true, entities });
  }
}
