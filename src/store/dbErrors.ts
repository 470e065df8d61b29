/**
 * Which database errors are an outage (try again later: the same write will land once the database
 * answers) and which are a refusal (the database answered no to this write: trying it again changes
 * nothing), and which misconfigurations no retry can cure. Classified by the driver's documented
 * error classes, error labels and server error codes.
 */
import {
  MongoAPIError,
  MongoBulkWriteError,
  MongoError,
  MongoInvalidArgumentError,
  MongoMissingCredentialsError,
  MongoNetworkError,
  MongoNotConnectedError,
  MongoParseError,
  MongoServerClosedError,
  MongoServerError,
  MongoServerSelectionError,
  MongoTopologyClosedError,
  MongoWriteConcernError,
} from 'mongodb';

/** Server codes of a node that is unreachable, stepping down, shutting down or busy: worth waiting out. */
const TRANSIENT_CODES: ReadonlySet<number> = new Set([
  6, // HostUnreachable
  7, // HostNotFound
  50, // MaxTimeMSExpired
  64, // WriteConcernFailed
  89, // NetworkTimeout
  91, // ShutdownInProgress
  112, // WriteConflict
  134, // ReadConcernMajorityNotAvailableYet
  189, // PrimarySteppedDown
  262, // ExceededTimeLimit
  9001, // SocketException
  10107, // NotWritablePrimary
  11600, // InterruptedAtShutdown
  11602, // InterruptedDueToReplStateChange
  13435, // NotPrimaryNoSecondaryOk
  13436, // NotPrimaryOrSecondary
]);

const TRANSIENT_LABELS = ['RetryableWriteError', 'ResetPool', 'TransientTransactionError'];

/** Server codes of credentials the server refused. */
const AUTH_CODES: ReadonlySet<number> = new Set([
  18, // AuthenticationFailed
  11, // UserNotFound
  13, // Unauthorized
  334, // MechanismUnavailable
]);

function codeOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** An outage: the database did not answer, or answered "not now". The same write may be tried again. */
export function isTransientDbError(err: unknown): boolean {
  if (
    err instanceof MongoNetworkError ||
    err instanceof MongoServerSelectionError ||
    err instanceof MongoNotConnectedError ||
    err instanceof MongoTopologyClosedError ||
    err instanceof MongoServerClosedError ||
    err instanceof MongoWriteConcernError
  ) {
    return true;
  }
  if (err instanceof MongoError && TRANSIENT_LABELS.some((l) => err.hasErrorLabel(l))) return true;
  if (err instanceof MongoBulkWriteError) {
    // Write errors name the operations the server refused; a write concern error is about waiting.
    if (err.writeConcernError) return true;
    const errors = (Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors]).filter(
      (e) => e !== undefined,
    );
    if (errors.length > 0) return errors.every((e) => TRANSIENT_CODES.has(e.code));
    // No write errors: the batch never got a reply. The driver wraps the failure it met on the way (a
    // refused connection, a dropped socket) in the bulk error; that failure decides.
    const wrapped = err.errorResponse;
    return wrapped instanceof Error && wrapped !== err && isTransientDbError(wrapped);
  }
  const code = codeOf(err);
  return code !== undefined && err instanceof MongoServerError && TRANSIENT_CODES.has(code);
}

/**
 * A misconfiguration no retry cures: the server refused the credentials, or the driver refused the
 * connection string or an option in it. Returns what to tell the operator, or null.
 */
export function fatalConnectProblem(err: unknown): string | null {
  if (isTransientDbError(err)) return null;
  const code = codeOf(err);
  if (
    code !== undefined &&
    AUTH_CODES.has(code) &&
    (err instanceof MongoServerError || !(err instanceof MongoError))
  )
    return 'the database refused the credentials in mongoUri (authentication failed)';
  if (err instanceof MongoMissingCredentialsError)
    return 'mongoUri names an authentication method but lacks its credentials';
  if (err instanceof MongoParseError) return 'mongoUri cannot be parsed';
  if (err instanceof MongoInvalidArgumentError || err instanceof MongoAPIError)
    return 'the driver refused an option of mongoUri';
  // The driver reports a failed handshake as a server selection error whose cause is the refusal.
  const cause = (err as { cause?: unknown } | null)?.cause;
  if (cause && cause !== err) return fatalConnectProblem(cause);
  return null;
}
