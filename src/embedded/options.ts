/**
 * The generic arguments every command may carry (readConcern, writeConcern, maxTimeMS, apiVersion...),
 * checked once per command as MongoDB 7.0 checks them: each is honoured, or refused with MongoDB's
 * code, never silently ignored.
 *
 * The embedded server is a one-member replica set whose state is applied synchronously: a command
 * runs from start to finish without interleaving, and its effects are in the durable log before the
 * reply. So the read concerns local, available, majority and linearizable all read the same, fully
 * acknowledged state, and afterClusterTime is met by any time the server has reached. It keeps no
 * history, so snapshot reads and atClusterTime cannot be served. Write concerns w: 0, 1 and 'majority'
 * are met by the one member; more members, or a tag, cannot be.
 */
import type { Document, Timestamp } from 'bson';
import { CommandError } from './errors.js';
import { isPlainObject, numericValue } from './bsonOrder.js';
import type { Engine } from './engine.js';

type Level = 'local' | 'available' | 'majority' | 'linearizable' | 'snapshot';

const LEVELS: readonly Level[] = ['local', 'available', 'majority', 'linearizable', 'snapshot'];
const READS: readonly Level[] = LEVELS;
const READS_NO_SNAPSHOT: readonly Level[] = ['local', 'available', 'majority', 'linearizable'];
const LOCAL_ONLY: readonly Level[] = ['local'];

interface Rules {
  /** The read concern levels MongoDB accepts for the command outside a transaction. */
  readConcern: readonly Level[];
  /** Whether the command takes a write concern (a function: it depends on the command). */
  writeConcern: boolean | ((cmd: Document) => boolean);
  /** A read whose maxTimeMS is checked after it ran (commands cannot be interrupted part-way). */
  timed?: boolean;
  /** In MongoDB's Stable API version 1 (apiStrict: true refuses the others). */
  apiV1?: boolean;
}

const writesThrough = (cmd: Document): boolean => {
  const pipeline = cmd.pipeline as unknown;
  if (!Array.isArray(pipeline) || pipeline.length === 0) return false;
  const last = pipeline[pipeline.length - 1] as unknown;
  return isPlainObject(last) && ('$out' in last || '$merge' in last);
};

const WRITE: Rules = { readConcern: LOCAL_ONLY, writeConcern: true, apiV1: true };
const DDL: Rules = { readConcern: LOCAL_ONLY, writeConcern: true, apiV1: true };

const RULES: Record<string, Rules> = {
  find: { readConcern: READS, writeConcern: false, timed: true, apiV1: true },
  aggregate: { readConcern: READS, writeConcern: writesThrough, timed: true, apiV1: true },
  distinct: { readConcern: READS, writeConcern: false, timed: true, apiV1: true },
  count: { readConcern: READS_NO_SNAPSHOT, writeConcern: false, timed: true, apiV1: true },
  explain: { readConcern: LOCAL_ONLY, writeConcern: false, timed: true, apiV1: true },
  getMore: { readConcern: LOCAL_ONLY, writeConcern: false, apiV1: true },
  killCursors: { readConcern: LOCAL_ONLY, writeConcern: false, apiV1: true },
  listCollections: { readConcern: LOCAL_ONLY, writeConcern: false, timed: true, apiV1: true },
  listIndexes: { readConcern: LOCAL_ONLY, writeConcern: false, timed: true, apiV1: true },
  listDatabases: { readConcern: LOCAL_ONLY, writeConcern: false, apiV1: true },
  insert: WRITE,
  update: WRITE,
  delete: WRITE,
  findAndModify: WRITE,
  findandmodify: WRITE,
  create: DDL,
  collMod: DDL,
  drop: DDL,
  dropDatabase: DDL,
  createIndexes: DDL,
  dropIndexes: DDL,
  renameCollection: { readConcern: LOCAL_ONLY, writeConcern: true },
  commitTransaction: WRITE,
  abortTransaction: WRITE,
  endSessions: { readConcern: LOCAL_ONLY, writeConcern: false, apiV1: true },
  refreshSessions: { readConcern: LOCAL_ONLY, writeConcern: false, apiV1: true },
  hello: { readConcern: LOCAL_ONLY, writeConcern: false, apiV1: true },
  ping: { readConcern: LOCAL_ONLY, writeConcern: false, apiV1: true },
};

const DEFAULT_RULES: Rules = { readConcern: LOCAL_ONLY, writeConcern: false };

/** The generic arguments of one command, as parsed before it runs. */
export interface GenericArguments {
  command: string;
  maxTimeMS: number;
  timed: boolean;
  writeConcern?: ParsedWriteConcern;
}

interface ParsedWriteConcern {
  /** A number of members, 'majority', or a tag name. */
  w: number | string;
  /** j: true (or the legacy fsync: true): the log is flushed to the device before the reply. */
  journal: boolean;
}

/** Checks the generic arguments of `cmd` (named `name`) before it runs; throws MongoDB's error. */
export function checkGenericArguments(name: string, cmd: Document, engine: Engine): GenericArguments {
  const rules = RULES[name] ?? DEFAULT_RULES;
  checkApi(name, cmd, rules);
  const maxTimeMS = parseMaxTimeMS(cmd.maxTimeMS);
  if (cmd.readConcern !== undefined) checkReadConcern(cmd.readConcern, rules, engine);
  let writeConcern: ParsedWriteConcern | undefined;
  if (cmd.writeConcern !== undefined) {
    const supported = typeof rules.writeConcern === 'function' ? rules.writeConcern(cmd) : rules.writeConcern;
    if (!supported) throw new CommandError('InvalidOptions', 'Command does not support writeConcern');
    writeConcern = parseWriteConcern(cmd.writeConcern, engine);
  }
  const out: GenericArguments = { command: name, maxTimeMS, timed: rules.timed === true };
  if (writeConcern) out.writeConcern = writeConcern;
  return out;
}

function checkApi(name: string, cmd: Document, rules: Rules): void {
  const version = cmd.apiVersion as unknown;
  if (version === undefined) {
    if (cmd.apiStrict !== undefined)
      throw new CommandError('Location4886600', 'Provided apiStrict without a corresponding apiVersion');
    if (cmd.apiDeprecationErrors !== undefined)
      throw new CommandError(
        'Location4886601',
        'Provided apiDeprecationErrors without a corresponding apiVersion',
      );
    return;
  }
  if (version !== '1')
    throw new CommandError(
      'APIVersionError',
      `API version must be "1"; got ${typeof version === 'string' ? `"${version}"` : String(version)}`,
    );
  for (const f of ['apiStrict', 'apiDeprecationErrors']) {
    const v = cmd[f] as unknown;
    if (v !== undefined && typeof v !== 'boolean')
      throw new CommandError('TypeMismatch', `BSON field '${f}' is the wrong type, expected type 'bool'`);
  }
  if (cmd.apiStrict === true && !rules.apiV1)
    throw new CommandError(
      'APIStrictError',
      `Provided apiStrict:true, but the command ${name} is not in API Version 1`,
    );
}

function parseMaxTimeMS(raw: unknown): number {
  if (raw === undefined || raw === null) return 0;
  const n = Number(numericValue(raw));
  if (typeof numericValue(raw) !== 'number' && typeof numericValue(raw) !== 'bigint')
    throw new CommandError('BadValue', 'maxTimeMS must be a number');
  if (!Number.isFinite(n) || n < 0 || n > 2147483647 || !Number.isInteger(n))
    throw new CommandError('BadValue', `${String(raw)} value for maxTimeMS is out of range [0, 2147483647]`);
  return n;
}

/** Parses and checks a readConcern as MongoDB's ReadConcernArgs does, then per command. */
function checkReadConcern(raw: unknown, rules: Rules, engine: Engine): void {
  if (!isPlainObject(raw)) throw new CommandError('FailedToParse', 'readConcern field should be an object');
  let level: Level = 'local';
  let after: Timestamp | undefined;
  let at: Timestamp | undefined;
  for (const k in raw) {
    const v = raw[k] as unknown;
    switch (k) {
      case 'level':
        if (typeof v !== 'string')
          throw new CommandError('TypeMismatch', 'readConcern.level must be a string');
        if (!(LEVELS as readonly string[]).includes(v))
          throw new CommandError(
            'FailedToParse',
            "readConcern.level must be either 'local', 'majority', 'linearizable', 'available', or 'snapshot'",
          );
        level = v as Level;
        break;
      case 'afterClusterTime':
      case 'atClusterTime':
        if (!isTimestamp(v)) throw new CommandError('TypeMismatch', `readConcern.${k} must be a Timestamp`);
        if (k === 'afterClusterTime') after = v;
        else at = v;
        break;
      case 'provenance':
        break;
      case 'afterOpTime':
        throw new CommandError(
          'NotImplemented',
          'readConcern.afterOpTime is internal to replication and not implemented by the embedded server',
        );
      default:
        throw new CommandError('InvalidOptions', `Unrecognized option in readConcern: ${k}`);
    }
  }
  if (after && at)
    throw new CommandError(
      'InvalidOptions',
      'Specifying a timestamp for readConcern snapshot in a causally consistent session is not allowed',
    );
  if (after && level !== 'local' && level !== 'majority' && level !== 'snapshot')
    throw new CommandError(
      'InvalidOptions',
      'afterClusterTime field can be set only if level is equal to majority, local, or snapshot',
    );
  if (at && level !== 'snapshot')
    throw new CommandError(
      'InvalidOptions',
      'atClusterTime field can be set only if level is equal to snapshot',
    );
  if (at && at.isZero()) throw new CommandError('InvalidOptions', 'atClusterTime cannot be a null timestamp');
  if (after && after.isZero())
    throw new CommandError('InvalidOptions', 'afterClusterTime cannot be a null timestamp');
  if (!rules.readConcern.includes(level))
    throw new CommandError('InvalidOptions', `Command does not support read concern { level: "${level}" }`);
  if (level === 'snapshot')
    throw new CommandError(
      'InvalidOptions',
      'Storage engine does not support read concern { level: "snapshot" }: the embedded server keeps no ' +
        'history of earlier versions, so it cannot read at a point in time',
    );
  if (after) {
    const current = engine.lastOpTime();
    if (after.greaterThan(current))
      throw new CommandError(
        'InvalidOptions',
        `readConcern afterClusterTime value must not be greater than the current clusterTime. Requested clusterTime: ${after.toString()}; current clusterTime: ${current.toString()}`,
      );
  }
}

function isTimestamp(v: unknown): v is Timestamp {
  return (v as { _bsontype?: string } | null)?._bsontype === 'Timestamp';
}

/** MongoDB's limit on w, the number of members that must acknowledge. */
const MAX_W = 50;

function parseWriteConcern(raw: unknown, engine: Engine): ParsedWriteConcern {
  if (!isPlainObject(raw)) throw new CommandError('FailedToParse', 'writeConcern must be an object');
  let w: number | string = 1;
  let journal = false;
  for (const k in raw) {
    const v = raw[k] as unknown;
    switch (k) {
      case 'w':
        if (typeof v === 'string') w = v;
        else {
          const n = Number(numericValue(v));
          if (typeof v === 'boolean' || !Number.isInteger(n) || n < 0 || n > MAX_W)
            throw new CommandError(
              'FailedToParse',
              `w has to be a non-negative number and not greater than ${MAX_W}; found: ${String(v)}`,
            );
          w = n;
        }
        break;
      case 'j':
      case 'fsync':
        if (typeof v !== 'boolean' && typeof numericValue(v) !== 'number')
          throw new CommandError('FailedToParse', `writeConcern.${k} must be a boolean`);
        if (v === true || (typeof v !== 'boolean' && Number(numericValue(v)) !== 0)) journal = true;
        break;
      case 'wtimeout':
      case 'wtimeoutMS':
      case 'provenance':
      case 'getLastError':
      case 'wOpTime':
      case 'wElectionId':
        break;
      default:
        throw new CommandError('FailedToParse', `unrecognized write concern field: ${k}`);
    }
  }
  if (journal && !engine.journaled)
    throw new CommandError(
      'BadValue',
      "cannot use 'j' option when a host does not have journaling enabled (this embedded server has no data directory)",
    );
  return { w, journal };
}

/**
 * After a command ran: a read that outlasted its maxTimeMS is answered MaxTimeMSExpired (its cursor
 * closed), as MongoDB would have interrupted it. Throws into the command's error reply.
 */
export function checkTimeLimit(
  args: GenericArguments,
  startedAt: number,
  reply: Document,
  killCursor: (id: number) => void,
): void {
  if (!args.timed || args.maxTimeMS === 0) return;
  if (Date.now() - startedAt <= args.maxTimeMS) return;
  const id = Number((reply.cursor as Document | undefined)?.id ?? 0);
  if (id !== 0) killCursor(id);
  throw new CommandError('MaxTimeMSExpired', 'operation exceeded time limit');
}

/**
 * Waits for the write concern, as MongoDB does after every command that takes one (failed ones
 * too): a journaled write is flushed to the device; members the one-member set does not have are
 * reported in writeConcernError beside the command's own result.
 */
export function applyWriteConcern(args: GenericArguments, reply: Document, engine: Engine): void {
  const wc = args.writeConcern;
  if (!wc) return;
  if (wc.journal) {
    try {
      engine.syncLog();
    } catch (err) {
      reply.writeConcernError = {
        code: 1,
        codeName: 'InternalError',
        errmsg: `the log could not be flushed to the device: ${err instanceof Error ? err.message : String(err)}`,
      };
      return;
    }
  }
  if (typeof wc.w === 'number') {
    if (wc.w > 1)
      reply.writeConcernError = {
        code: 100,
        codeName: 'UnsatisfiableWriteConcern',
        errmsg: `Not enough data-bearing nodes: w: ${wc.w} asks for more members than this one-member replica set has`,
        errInfo: { writeConcern: { w: wc.w, ...(wc.journal ? { j: true } : {}) } },
      };
  } else if (wc.w !== 'majority') {
    reply.writeConcernError = {
      code: 79,
      codeName: 'UnknownReplWriteConcern',
      errmsg: `No write concern mode named '${wc.w}' found in replica set configuration`,
      errInfo: { writeConcern: { w: wc.w } },
    };
  }
}
