/**
 * Retryable writes: the driver sends insert, single-statement update/delete and findAndModify with
 * the session's `lsid` and a `txnNumber`, and after a network error sends the very same command once
 * more, on a new connection. As MongoDB does (its config.transactions), the server remembers per
 * session the highest txnNumber and the reply it gave; a retry of that txnNumber is answered with the
 * remembered reply instead of running again, so a write whose reply was lost is applied exactly once.
 * An older txnNumber is refused with TransactionTooOld.
 *
 * The whole reply is remembered, not each statement of a batch: a retry gets the same answer, write
 * errors included, which is what MongoDB's per-statement replay gives for a retry of an identical
 * command (the driver never changes a command when it retries it).
 *
 * Entries expire after the session timeout (logicalSessionTimeoutMinutes) without a retryable write,
 * or when the client ends the session. The engine writes each entry into the durable log with the
 * effects of its command, so a retry that reaches a restarted server is still recognised.
 */
import { BSON, Binary, Long, type Document } from 'bson';
import { CommandError } from './errors.js';
import { isPlainObject } from './bsonOrder.js';
import { RAW_NUMBER_OPTIONS } from './numbers.js';
import { sessionIdKey } from './sessions.js';

/** MongoDB's default logicalSessionTimeoutMinutes, also advertised by hello. */
export const SESSION_TIMEOUT_MS = 30 * 60_000;
const SWEEP_INTERVAL_MS = 60_000;

const RETRYABLE_COMMANDS = new Set(['insert', 'update', 'delete', 'findAndModify', 'findandmodify']);

/** One retryable write: which session, which of its writes. */
export interface RetryableWrite {
  key: string;
  lsid: Binary;
  txnNumber: bigint;
}

interface Entry {
  lsid: Binary;
  txnNumber: bigint;
  /** The BSON of the reply, once the write has been applied and acknowledged. */
  reply?: Uint8Array;
  lastUse: number;
}

/** How a remembered write is persisted: the log record's fields and the snapshot's documents. */
export interface RetryableWriteDoc {
  lsid: Binary;
  txnNumber: Long;
  reply: Binary;
  at: Date;
}

/** The table's key for a session id (see sessionIdKey). */
export function sessionKey(id: unknown): string | undefined {
  return sessionIdKey(id);
}

/** A session key as MongoDB names a session in its messages: the id's bytes in hex. */
function sessionHex(key: string): string {
  return Buffer.from(key, 'latin1').toString('hex');
}

/** The retryable write a command is, if it carries a txnNumber. */
export function retryableWriteOf(name: string, cmd: Document): RetryableWrite | undefined {
  const txn = cmd.txnNumber as unknown;
  if (txn === undefined || txn === null || !RETRYABLE_COMMANDS.has(name)) return undefined;
  const lsid = cmd.lsid as unknown;
  const key = isPlainObject(lsid) ? sessionKey(lsid.id) : undefined;
  if (!isPlainObject(lsid) || key === undefined) {
    throw new CommandError('InvalidOptions', 'Transaction number requires a session ID to also be specified');
  }
  let txnNumber: bigint;
  // From its two halves: Long.toBigInt goes through a decimal string, on every retryable write.
  if (txn instanceof Long)
    txnNumber = txn.unsigned ? txn.toBigInt() : (BigInt(txn.high) << 32n) + BigInt(txn.low >>> 0);
  else if (typeof txn === 'number' && Number.isInteger(txn)) txnNumber = BigInt(txn);
  else if (typeof txn === 'object' && typeof (txn as { valueOf(): unknown }).valueOf() === 'number') {
    txnNumber = BigInt(Math.trunc((txn as { valueOf(): number }).valueOf()));
  } else
    throw new CommandError('TypeMismatch', "BSON field 'txnNumber' is the wrong type, expected type 'long'");
  if (txnNumber < 0n) throw new CommandError('BadValue', `txnNumber must be non-negative, got ${txnNumber}`);
  return { key, lsid: lsid.id as Binary, txnNumber };
}

export class RetryableWriteTable {
  private readonly entries = new Map<string, Entry>();
  private lastSweep = 0;

  constructor(private readonly timeoutMs = SESSION_TIMEOUT_MS) {}

  get size(): number {
    return this.entries.size;
  }

  /**
   * Called before a retryable write runs: the reply to answer it with if it already ran, undefined
   * if it is to run now (it then becomes the session's latest write). Throws for an older txnNumber.
   */
  begin(w: RetryableWrite, now = Date.now()): Document | undefined {
    this.sweep(now);
    const e = this.entries.get(w.key);
    if (e) {
      e.lastUse = now;
      if (w.txnNumber < e.txnNumber) {
        throw new CommandError(
          'TransactionTooOld',
          `Retryable write with txnNumber ${w.txnNumber} is prohibited on session ${sessionHex(w.key)} because a newer ` +
            `retryable write with txnNumber ${e.txnNumber} has already started on this session.`,
        );
      }
      if (w.txnNumber === e.txnNumber && e.reply) return BSON.deserialize(e.reply, RAW_NUMBER_OPTIONS);
      if (w.txnNumber > e.txnNumber) {
        e.txnNumber = w.txnNumber;
        delete e.reply;
      }
      return undefined;
    }
    this.entries.set(w.key, { lsid: w.lsid, txnNumber: w.txnNumber, lastUse: now });
    return undefined;
  }

  /** Remembers the reply of a write that has been applied (and, with a data directory, logged). */
  record(w: RetryableWrite, reply: Uint8Array, now = Date.now()): void {
    const e = this.entries.get(w.key);
    if (e && e.txnNumber > w.txnNumber) return;
    this.entries.set(w.key, { lsid: w.lsid, txnNumber: w.txnNumber, reply, lastUse: now });
  }

  /** endSessions: the client will not retry on these sessions again. */
  forget(lsids: unknown[]): void {
    for (const lsid of lsids) {
      const key = isPlainObject(lsid) ? sessionKey(lsid.id) : undefined;
      if (key) this.entries.delete(key);
    }
  }

  /** Restores a persisted entry (replay of the log or a snapshot), unless it has expired meanwhile. */
  restore(doc: RetryableWriteDoc, now = Date.now()): void {
    const key = sessionKey(doc.lsid);
    const lastUse = doc.at.getTime();
    if (key === undefined || now - lastUse > this.timeoutMs) return;
    this.record(
      { key, lsid: doc.lsid, txnNumber: BigInt(doc.txnNumber.toString()) },
      doc.reply.buffer.subarray(0, doc.reply.position),
      lastUse,
    );
  }

  /** The live entries with a reply, for a snapshot. */
  toDocs(now = Date.now()): RetryableWriteDoc[] {
    this.sweep(now, true);
    const out: RetryableWriteDoc[] = [];
    for (const e of this.entries.values()) {
      if (!e.reply) continue;
      out.push({
        lsid: e.lsid,
        txnNumber: Long.fromBigInt(e.txnNumber),
        reply: new Binary(e.reply),
        at: new Date(e.lastUse),
      });
    }
    return out;
  }

  private sweep(now: number, force = false): void {
    if (!force && now - this.lastSweep < SWEEP_INTERVAL_MS) return;
    this.lastSweep = now;
    for (const [k, e] of this.entries) if (now - e.lastUse > this.timeoutMs) this.entries.delete(k);
  }
}

/** The persisted form of a write about to be remembered. */
export function retryableWriteDoc(w: RetryableWrite, reply: Uint8Array, now = Date.now()): RetryableWriteDoc {
  return {
    lsid: w.lsid,
    txnNumber: Long.fromBigInt(w.txnNumber),
    reply: new Binary(reply),
    at: new Date(now),
  };
}
