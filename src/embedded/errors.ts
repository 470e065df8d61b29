/**
 * Errors the embedded server reports to clients, shaped like MongoDB's: ok 0, errmsg, code, codeName.
 */
import type { Document } from 'bson';

export const ErrorCodes = {
  InternalError: 1,
  BadValue: 2,
  Overflow: 45,
  Unauthorized: 13,
  FailedToParse: 9,
  TypeMismatch: 14,
  InvalidLength: 16,
  InvalidBSON: 22,
  IllegalOperation: 20,
  NamespaceNotFound: 26,
  IndexNotFound: 27,
  CursorNotFound: 43,
  NoMatchingDocument: 47,
  NamespaceExists: 48,
  MaxTimeMSExpired: 50,
  DollarPrefixedFieldName: 52,
  InvalidIdField: 53,
  CommandNotFound: 59,
  ImmutableField: 66,
  CannotCreateIndex: 67,
  IndexAlreadyExists: 68,
  InvalidOptions: 72,
  InvalidNamespace: 73,
  IndexOptionsConflict: 85,
  IndexKeySpecsConflict: 86,
  OperationNotSupportedInTransaction: 263,
  NoSuchKey: 4,
  Location40324: 40324,
  InvalidResumeToken: 260,
  ChangeStreamFatalError: 280,
  ChangeStreamHistoryLost: 286,
  TransactionTooOld: 225,
  InterruptedAtShutdown: 11600,
  DuplicateKey: 11000,
  NotImplemented: 238,
  InvalidPipelineOperator: 168,
  ConflictingUpdateOperators: 40,
  DocumentValidationFailure: 121,
  CommandNotSupportedOnView: 166,
  OptionNotSupportedOnView: 167,
  ViewDepthLimitExceeded: 170,
  Location40414: 40414,
  Location40415: 40415,
  InvalidIndexSpecificationOption: 197,
  UnsatisfiableCommitQuorum: 278,
  NoQueryExecutionPlans: 291,
  APIVersionError: 322,
  APIStrictError: 323,
  Location15952: 15952,
  Location31264: 31264,
  Location51183: 51183,
  Location6108304: 6108304,
  Location4886600: 4886600,
  Location4886601: 4886601,
  BSONObjectTooLarge: 10334,
  Location17419: 17419,
  Location17420: 17420,
} as const;

export type ErrorCodeName = keyof typeof ErrorCodes;

const nameByCode = new Map<number, string>(
  Object.entries(ErrorCodes).map(([name, code]) => [code, name.startsWith('Location') ? name : name]),
);

export class CommandError extends Error {
  override readonly name = 'CommandError';
  readonly code: number;
  readonly codeName: string;
  /** Extra fields for the error reply (keyPattern, keyValue, ...). */
  readonly extra: Document;

  constructor(codeName: ErrorCodeName, message: string, extra: Document = {}) {
    super(message);
    this.code = ErrorCodes[codeName];
    this.codeName = nameByCode.get(this.code) ?? codeName;
    this.extra = extra;
  }

  toReply(): Document {
    return { ok: 0, errmsg: this.message, code: this.code, codeName: this.codeName, ...this.extra };
  }
}

export function badValue(message: string): CommandError {
  return new CommandError('BadValue', message);
}

export function failedToParse(message: string): CommandError {
  return new CommandError('FailedToParse', message);
}

export function typeMismatch(message: string): CommandError {
  return new CommandError('TypeMismatch', message);
}

/** Turns anything thrown while running a command into a CommandError. */
export function toCommandError(err: unknown): CommandError {
  if (err instanceof CommandError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (isMingoError(err)) return new CommandError('BadValue', message);
  return new CommandError('InternalError', message);
}

/** mingo reports unknown or malformed operators with its own error class: the user's error, not ours. */
function isMingoError(err: unknown): boolean {
  return err instanceof Error && err.constructor.name === 'MingoError';
}

/** An exception that is no refusal of the request but a fault while serving it (a bug, a RangeError). */
export function isInternalFault(err: unknown): boolean {
  return !(err instanceof CommandError) && !isMingoError(err);
}
