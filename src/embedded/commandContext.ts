/**
 * What every command handler receives, and small helpers for reading command arguments.
 */
import type { Document } from 'bson';
import { CommandError } from './errors.js';
import { isPlainObject, numericValue } from './bsonOrder.js';
import type { CursorManager } from './cursor.js';
import type { Engine } from './engine.js';

export interface ServerInfo {
  host: string;
  port: number;
  startedAt: Date;
}

export interface CommandContext {
  engine: Engine;
  cursors: CursorManager;
  server: ServerInfo;
  connectionId: number;
  /** The database the command addresses ($db). */
  db: string;
  /** The size in bytes of the message that carried the command, when it came over the wire. */
  requestSize?: number;
  /** Where faults met while serving the command are reported. */
  log?: (msg: string) => void;
}

export type CommandHandler = (cmd: Document, ctx: CommandContext) => Document | Promise<Document>;

/** The collection name given as the command's first field. */
export function collectionArg(cmd: Document, name: string): string {
  const v = cmd[name] as unknown;
  if (typeof v !== 'string') {
    throw new CommandError(
      'InvalidNamespace',
      `collection name has invalid type ${v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v}`,
    );
  }
  if (v.length === 0)
    throw new CommandError('InvalidNamespace', `Invalid namespace specified '${cmd.$db as string}.'`);
  return v;
}

export function optionalDoc(cmd: Document, field: string): Document | undefined {
  const v = cmd[field] as unknown;
  if (v === undefined || v === null) return undefined;
  if (!isPlainObject(v))
    throw new CommandError(
      'TypeMismatch',
      `BSON field '${field}' is the wrong type '${Array.isArray(v) ? 'array' : typeof v}', expected type 'object'`,
    );
  return v;
}

export function optionalNumber(cmd: Document, field: string): number | undefined {
  const v = cmd[field] as unknown;
  if (v === undefined || v === null) return undefined;
  const n = numericValue(v);
  if (typeof n === 'number' && Number.isNaN(n)) {
    throw new CommandError(
      'TypeMismatch',
      `BSON field '${field}' is the wrong type '${typeof v}', expected types '[long, int, decimal, double]'`,
    );
  }
  return Number(n);
}

export function optionalBool(cmd: Document, field: string): boolean | undefined {
  const v = cmd[field] as unknown;
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number') return v !== 0;
  throw new CommandError(
    'TypeMismatch',
    `BSON field '${field}' is the wrong type '${typeof v}', expected type 'bool'`,
  );
}

export function nonNegative(n: number | undefined, field: string): number | undefined {
  if (n !== undefined && n < 0)
    throw new CommandError('BadValue', `${field} value must be non-negative, but received: ${n}`);
  return n;
}

/**
 * MongoDB's generic command arguments (its generic_argument.idl): every command accepts them.
 * options.ts checks the ones that change a command's meaning (readConcern, writeConcern, maxTimeMS,
 * apiVersion...); the rest are routing, auditing and replication metadata with no effect on a single
 * unsharded node. Transactions (autocommit, startTransaction) are refused before any command runs.
 */
export const GENERIC_FIELDS = new Set([
  '$db',
  'lsid',
  'txnNumber',
  'stmtId',
  'autocommit',
  'startTransaction',
  '$clusterTime',
  '$readPreference',
  'writeConcern',
  'readConcern',
  'comment',
  'apiVersion',
  'apiStrict',
  'apiDeprecationErrors',
  'maxTimeMS',
  'maxTimeMSOpOnly',
  'clientOperationKey',
  'txnRetryCounter',
  '$audit',
  '$client',
  '$configServerState',
  '$oplogQueryData',
  '$queryOptions',
  '$replData',
  '$configTime',
  '$topologyTime',
  'tracking_info',
  'mayBypassWriteBlocking',
  'expectPrefix',
]);

/**
 * Refuses a field the command does not know, as MongoDB's strict command parsers do (40415).
 * `known` lists the command's own fields; generic arguments are always accepted.
 */
export function rejectUnknownFields(cmd: Document, command: string, known: readonly string[]): void {
  let set: ReadonlySet<string> | undefined;
  if (known.length > 8) {
    set = KNOWN_SETS.get(known);
    if (!set) KNOWN_SETS.set(known, (set = new Set(known)));
  }
  for (const k in cmd) {
    if (k === command || GENERIC_FIELDS.has(k) || (set ? set.has(k) : known.includes(k))) continue;
    throw unknownField(`${command}.${k}`);
  }
}

/** Long lists of known fields as sets, kept for as long as their list is (long lists are constants). */
const KNOWN_SETS = new WeakMap<readonly string[], ReadonlySet<string>>();

/** Refuses a field of a sub-document (an update statement, an index spec) that MongoDB does not know. */
export function rejectUnknownSubfields(doc: Document, path: string, known: readonly string[]): void {
  for (const k of Object.keys(doc)) if (!known.includes(k)) throw unknownField(`${path}.${k}`);
}

function unknownField(path: string): CommandError {
  return new CommandError('Location40415', `BSON field '${path}' is an unknown field.`);
}

/**
 * Refuses an option MongoDB implements and this server does not (NotImplemented 238), naming it:
 * a known option is never silently ignored.
 */
export function notImplemented(what: string, why?: string): CommandError {
  return new CommandError(
    'NotImplemented',
    `${what} is not implemented by the jobd embedded server${why ? `: ${why}` : ''}`,
  );
}
