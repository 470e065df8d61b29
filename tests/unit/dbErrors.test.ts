/**
 * Which database errors are an outage (retry the same write), a refusal (never taken for an outage),
 * or a misconfiguration that stops jobd. Errors built as the driver builds them from a server reply.
 */
import { MongoBulkWriteError, MongoNetworkError, MongoParseError, MongoServerError } from 'mongodb';
import { describe, expect, it } from 'vitest';
import { fatalConnectProblem, isTransientDbError } from '../../src/store/index.js';

const server = (code: number, codeName: string, errmsg = codeName) =>
  new MongoServerError({ ok: 0, code, codeName, errmsg });

describe('database error classes', () => {
  it('an authentication failure (code 18) stops jobd with its reason', () => {
    const err = server(18, 'AuthenticationFailed', 'Authentication failed.');
    expect(fatalConnectProblem(err)).toBe(
      'the database refused the credentials in mongoUri (authentication failed)',
    );
    expect(isTransientDbError(err)).toBe(false);
  });

  it('a connection string the driver cannot parse stops jobd', () => {
    expect(fatalConnectProblem(new MongoParseError('Invalid scheme'))).toBe('mongoUri cannot be parsed');
  });

  it('network errors and a stepping-down primary are outages, never fatal', () => {
    for (const err of [
      new MongoNetworkError('connection reset'),
      server(10107, 'NotWritablePrimary'),
      server(91, 'ShutdownInProgress'),
    ]) {
      expect(isTransientDbError(err)).toBe(true);
      expect(fatalConnectProblem(err)).toBeNull();
    }
  });

  it('a bulk write that met a network error on the way (no write errors) is an outage', () => {
    // What bulkWrite throws when the connection is refused mid-outage: the driver wraps its own
    // network error in a MongoBulkWriteError with no write errors. Taken for a refusal, a settled
    // outcome was once replaced by a failure (JOBD_OUTCOME_REFUSED) and the job failed for good.
    const refused = new MongoNetworkError('connect ECONNREFUSED 127.0.0.1:27017');
    const wrapped = new MongoBulkWriteError(refused, {} as never);
    expect(wrapped.writeErrors).toEqual([]);
    expect(isTransientDbError(wrapped)).toBe(true);
    // The same wrapper around a server's refusal stays a refusal.
    const notOutage = new MongoBulkWriteError(server(10334, 'BSONObjectTooLarge'), {} as never);
    expect(isTransientDbError(notOutage)).toBe(false);
  });

  it('a refused document (validation, size) is not an outage', () => {
    expect(isTransientDbError(server(121, 'DocumentValidationFailure'))).toBe(false);
    expect(isTransientDbError(server(10334, 'BSONObjectTooLarge'))).toBe(false);
    expect(isTransientDbError(new RangeError('Maximum call stack size exceeded'))).toBe(false);
  });
});
