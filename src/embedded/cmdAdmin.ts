/**
 * Handshake, monitoring and server-level commands.
 */
import { Long, type Document } from 'bson';
import { CommandError } from './errors.js';
import {
  MAX_BSON_DEPTH,
  MAX_BSON_OBJECT_SIZE,
  MAX_MESSAGE_SIZE_BYTES,
  MAX_WRITE_BATCH_SIZE,
} from './limits.js';
import {
  optionalDoc,
  rejectUnknownFields,
  type CommandContext,
  type CommandHandler,
} from './commandContext.js';
import { compileFilter } from './mql.js';

export const SERVER_VERSION = '7.0.14';
export const MAX_WIRE_VERSION = 21;
export const SET_NAME = 'jobd-embedded';

function hostString(ctx: CommandContext): string {
  return `${ctx.server.host}:${ctx.server.port}`;
}

function helloReply(ctx: CommandContext, legacy: boolean): Document {
  const me = hostString(ctx);
  const reply: Document = {};
  if (legacy) reply.ismaster = true;
  else reply.isWritablePrimary = true;
  Object.assign(reply, {
    helloOk: true,
    secondary: false,
    setName: SET_NAME,
    setVersion: 1,
    hosts: [me],
    primary: me,
    me,
    maxBsonObjectSize: MAX_BSON_OBJECT_SIZE,
    maxMessageSizeBytes: MAX_MESSAGE_SIZE_BYTES,
    maxWriteBatchSize: MAX_WRITE_BATCH_SIZE,
    localTime: new Date(),
    logicalSessionTimeoutMinutes: 30,
    connectionId: ctx.connectionId,
    minWireVersion: 0,
    maxWireVersion: MAX_WIRE_VERSION,
    readOnly: false,
    ok: 1,
  });
  return reply;
}

const hello: CommandHandler = (_cmd, ctx) => helloReply(ctx, false);
const isMaster: CommandHandler = (_cmd, ctx) => helloReply(ctx, true);

const buildInfo: CommandHandler = () => ({
  version: SERVER_VERSION,
  gitVersion: 'jobd-embedded',
  versionArray: SERVER_VERSION.split('.').map(Number).concat(0),
  bits: 64,
  debug: false,
  maxBsonObjectSize: MAX_BSON_OBJECT_SIZE,
  storageEngines: ['jobd-embedded'],
  modules: [],
  javascriptEngine: 'none',
  ok: 1,
});

const PARAMETERS: Document = {
  featureCompatibilityVersion: { version: '7.0' },
  authenticationMechanisms: [],
  maxBSONDepth: MAX_BSON_DEPTH,
  transactionLifetimeLimitSeconds: 60,
};

const getParameter: CommandHandler = (cmd) => {
  const out: Document = {};
  const all =
    cmd.getParameter === '*' || (typeof cmd.getParameter === 'object' && cmd.getParameter?.allParameters);
  for (const [k, v] of Object.entries(PARAMETERS)) if (all || k in cmd) out[k] = v;
  if (!all && Object.keys(out).length === 0)
    throw new CommandError('InvalidOptions', 'no option found to get');
  return { ...out, ok: 1 };
};

const serverStatus: CommandHandler = (_cmd, ctx) => ({
  host: hostString(ctx),
  version: SERVER_VERSION,
  process: 'jobd-embedded',
  pid: Long.fromNumber(process.pid),
  uptime: Math.floor((Date.now() - ctx.server.startedAt.getTime()) / 1000),
  uptimeMillis: Long.fromNumber(Date.now() - ctx.server.startedAt.getTime()),
  localTime: new Date(),
  connections: { current: 1, available: 1000 },
  storageEngine: { name: 'jobd-embedded', persistent: false },
  repl: { setName: SET_NAME, isWritablePrimary: true, primary: hostString(ctx), me: hostString(ctx) },
  ok: 1,
});

const listDatabases: CommandHandler = (cmd, ctx) => {
  // authorizedDatabases only narrows the list for users without listDatabases; there is no access control.
  rejectUnknownFields(cmd, 'listDatabases', ['filter', 'nameOnly', 'authorizedDatabases']);
  const matcher = compileFilter(optionalDoc(cmd, 'filter'));
  const names = [...ctx.engine.dbs.keys()].sort();
  const databases = names
    .map((name) => ({
      name,
      sizeOnDisk: 0,
      empty: (ctx.engine.dbs.get(name)?.size ?? 0) === 0,
    }))
    .filter((d) => matcher.test(d));
  if (cmd.nameOnly) return { databases: databases.map((d) => ({ name: d.name })), ok: 1 };
  return { databases, totalSize: 0, totalSizeMb: 0, ok: 1 };
};

const ok: CommandHandler = () => ({ ok: 1 });

const whatsmyuri: CommandHandler = () => ({ you: '127.0.0.1:0', ok: 1 });

const hostInfo: CommandHandler = () => ({
  system: { currentTime: new Date(), hostname: 'localhost', numCores: 1 },
  os: { type: process.platform },
  ok: 1,
});

const replSetGetStatus: CommandHandler = (_cmd, ctx) => ({
  set: SET_NAME,
  date: new Date(),
  myState: 1,
  members: [{ _id: 0, name: hostString(ctx), health: 1, state: 1, stateStr: 'PRIMARY', self: true }],
  ok: 1,
});

const connectionStatus: CommandHandler = () => ({
  authInfo: { authenticatedUsers: [], authenticatedUserRoles: [] },
  ok: 1,
});

const refuseTransactions: CommandHandler = () => {
  throw new CommandError('IllegalOperation', 'Transactions are not supported by the jobd embedded server');
};

export const adminCommands: Record<string, CommandHandler> = {
  hello,
  isMaster,
  ismaster: isMaster,
  ping: ok,
  buildInfo,
  buildinfo: buildInfo,
  getParameter,
  serverStatus,
  listDatabases,
  endSessions: (cmd, ctx) => {
    if (Array.isArray(cmd.endSessions)) {
      ctx.engine.sessions.end(cmd.endSessions as unknown[]);
      ctx.engine.retryableWrites.forget(cmd.endSessions as unknown[]);
    }
    return { ok: 1 };
  },
  killSessions: ok,
  killAllSessions: ok,
  refreshSessions: ok,
  startSession: ok,
  whatsmyuri,
  hostInfo,
  replSetGetStatus,
  connectionStatus,
  getCmdLineOpts: () => ({ argv: ['jobd-embedded'], parsed: {}, ok: 1 }),
  getFreeMonitoringStatus: () => ({ state: 'disabled', ok: 1 }),
  getLog: () => ({ totalLinesWritten: 0, log: [], ok: 1 }),
  commitTransaction: refuseTransactions,
  abortTransaction: refuseTransactions,
};
