/**
 * Command dispatch: finds the handler named by the command's first field, runs it, commits its
 * effects to the durable store, and shapes the reply (or error) as MongoDB does.
 */
import { Binary, Long, type Document } from 'bson';
import { CommandError, toCommandError } from './errors.js';
import { validateDbName } from './engine.js';
import { adminCommands } from './cmdAdmin.js';
import { aggregateCommands } from './cmdAggregate.js';
import type { CommandContext, CommandHandler } from './commandContext.js';
import { ddlCommands } from './cmdDdl.js';
import { readCommands } from './cmdRead.js';
import { writeCommands } from './cmdWrite.js';
import { retryableWriteOf } from './retryableWrites.js';
import {
  applyWriteConcern,
  checkGenericArguments,
  checkTimeLimit,
  type GenericArguments,
} from './options.js';

const HANDLERS: Record<string, CommandHandler> = {
  ...adminCommands,
  ...ddlCommands,
  ...readCommands,
  ...writeCommands,
  ...aggregateCommands,
};

const ZERO_SIGNATURE = { hash: new Binary(Buffer.alloc(20), 0), keyId: Long.fromNumber(0) };

export async function runCommand(
  cmd: Document,
  ctx: Omit<CommandContext, 'db'>,
  dbName?: string,
): Promise<Document> {
  const name = Object.keys(cmd)[0];
  let reply: Document;
  let generic: GenericArguments | undefined;
  try {
    if (!name) throw new CommandError('FailedToParse', 'Empty command object');
    const handler = Object.prototype.hasOwnProperty.call(HANDLERS, name) ? HANDLERS[name] : undefined;
    if (!handler) throw new CommandError('CommandNotFound', `no such command: '${name}'`);
    ctx.engine.sessions.touch(cmd.lsid);
    const db = typeof cmd.$db === 'string' ? cmd.$db : (dbName ?? 'admin');
    validateDbName(db);
    if (cmd.startTransaction || cmd.autocommit === false) {
      throw new CommandError(
        'IllegalOperation',
        'Transactions are not supported by the jobd embedded server',
      );
    }
    generic = checkGenericArguments(name, cmd, ctx.engine);
    const write = retryableWriteOf(name, cmd);
    const recorded = write ? ctx.engine.retryableWrites.begin(write) : undefined;
    if (recorded) {
      reply = recorded;
    } else {
      const started = Date.now();
      const result = handler(cmd, { ...ctx, db });
      reply = result instanceof Promise ? await result : result;
      ctx.engine.commit(write ? { write, reply } : undefined);
      checkTimeLimit(generic, started, reply, (id) => ctx.cursors.kill(id));
    }
  } catch (err) {
    // Effects of a failed command (e.g. the documents an ordered batch wrote before its error) stay.
    try {
      ctx.engine.commit();
    } catch (commitErr) {
      return toCommandError(commitErr).toReply();
    }
    reply = toCommandError(err).toReply();
  }
  if (generic) applyWriteConcern(generic, reply, ctx.engine);
  const opTime = ctx.engine.lastOpTime();
  reply.operationTime = opTime;
  reply.$clusterTime = { clusterTime: opTime, signature: ZERO_SIGNATURE };
  return reply;
}
