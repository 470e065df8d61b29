/**
 * Command dispatch: finds the handler named by the command's first field, runs it, commits its
 * effects to the durable store, and shapes the reply (or error) as MongoDB does.
 */
import { Binary, Long, type Document } from 'bson';
import { CommandError, isInternalFault, toCommandError } from './errors.js';
import { encodeBody, withClusterTime } from './wire.js';
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

/** A command's reply, and its BSON as it goes on the wire. */
export interface CommandOutcome {
  reply: Document;
  body: Buffer;
  /** The reply's BSON without the cluster time fields, when encoded apart. */
  bare?: Buffer;
}

/** Runs a command and returns its reply (see executeCommand). */
export async function runCommand(
  cmd: Document,
  ctx: Omit<CommandContext, 'db'>,
  dbName?: string,
): Promise<Document> {
  return (await executeCommand(cmd, ctx, dbName)).reply;
}

/**
 * Runs a command and encodes its reply. Nothing thrown escapes: a refusal becomes MongoDB's error reply;
 * a fault (an exception that is no refusal) becomes InternalError, is logged naming the command, and
 * every effect of the command is taken back. The reply is encoded before the command's effects are
 * committed, so a reply that cannot be sent (over the size limit) takes its command back too.
 */
export async function executeCommand(
  cmd: Document,
  ctx: Omit<CommandContext, 'db'>,
  dbName?: string,
): Promise<CommandOutcome> {
  const name = Object.keys(cmd)[0];
  let stage: Stage = 'run';
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
      applyWriteConcern(generic, recorded, ctx.engine);
      return finish(recorded, ctx);
    }
    const started = Date.now();
    const result = handler(cmd, { ...ctx, db });
    // A synchronous handler is committed in the same turn, so no other command sees its effects first.
    const reply = result instanceof Promise ? await result : result;
    stage = 'encode';
    let outcome = finish(reply, ctx);
    stage = 'commit';
    ctx.engine.commit(write ? { write, reply, bytes: outcome.bare } : undefined);
    stage = 'committed';
    checkTimeLimit(generic, started, reply, (id) => ctx.cursors.kill(id));
    applyWriteConcern(generic, reply, ctx.engine);
    if (reply.writeConcernError !== undefined) outcome = finish(reply, ctx);
    return outcome;
  } catch (err) {
    return failed(err, stage, name, ctx, generic);
  }
}

/** How far a command got: its effects are taken back up to 'commit', and kept once 'committed'. */
type Stage = 'run' | 'encode' | 'commit' | 'committed';

function failed(
  err: unknown,
  stage: Stage,
  name: string | undefined,
  ctx: Omit<CommandContext, 'db'>,
  generic: GenericArguments | undefined,
): CommandOutcome {
  try {
    if (stage === 'run' && !isInternalFault(err)) {
      // A refusal keeps what the command did before it (e.g. the documents an ordered batch wrote
      // before its error), as in MongoDB.
      ctx.engine.commit();
    } else {
      // Once committed, or after a failed append (the engine took the command back), a no-op.
      ctx.engine.abort();
    }
  } catch (commitErr) {
    err = commitErr;
  }
  if (isInternalFault(err)) {
    ctx.log?.(
      `jobd-embedded: command '${name ?? '(none)'}' on connection ${ctx.connectionId} failed with an internal error` +
        `${stage === 'committed' ? ' after its effects were committed' : '; its effects were undone'}: ` +
        (err instanceof Error ? (err.stack ?? err.message) : String(err)),
    );
  }
  const reply = toCommandError(err).toReply();
  try {
    if (generic) applyWriteConcern(generic, reply, ctx.engine);
    return finish(reply, ctx);
  } catch (encodeErr) {
    // An error reply too large to send (a message quoting a huge value): say so in a small one.
    const reason = encodeErr instanceof Error ? encodeErr.message : String(encodeErr);
    return finish(
      new CommandError(
        'InternalError',
        `the error reply to '${name ?? '(none)'}' could not be encoded (${reason.slice(0, 200)})`,
      ).toReply(),
      ctx,
    );
  }
}

/**
 * Adds the cluster time fields every reply carries, and encodes the reply: the reply's own BSON
 * (`bare`, which a retryable write remembers) with the two fields appended to it.
 */
function finish(reply: Document, ctx: Omit<CommandContext, 'db'>): CommandOutcome {
  const opTime = ctx.engine.lastOpTime();
  // A copy: the reply a retryable write remembers stays without them (they are fresh on every answer).
  const sent = (): Document => ({
    ...reply,
    operationTime: opTime,
    $clusterTime: { clusterTime: opTime, signature: ZERO_SIGNATURE },
  });
  if (reply.operationTime !== undefined || reply.$clusterTime !== undefined) {
    const whole = sent();
    return { reply: whole, body: encodeBody(whole) };
  }
  const bare = encodeBody(reply);
  // Over the limit with the two fields: encoding the whole refuses it as before.
  const body = withClusterTime(bare, opTime) ?? encodeBody(sent());
  // The reply as a document is wanted by in-process callers only: the wire sends `body`.
  let whole: Document | undefined;
  return {
    get reply() {
      return (whole ??= sent());
    },
    body,
    bare,
  };
}
