/**
 * The logical sessions this server has seen: every command's `lsid` refreshes its session,
 * endSessions forgets them, and $listLocalSessions reports them (there are no users, so every
 * session belongs to the unauthenticated user, whose uid is the SHA-256 of the empty name).
 */
import { createHash } from 'node:crypto';
import { Binary, type Document } from 'bson';
import { isPlainObject } from './bsonOrder.js';

const NO_USER_UID = new Binary(createHash('sha256').update('').digest(), 0);
/** MongoDB's default logicalSessionTimeoutMinutes. */
const SESSION_TIMEOUT_MS = 30 * 60_000;

/**
 * A session id's bytes as a string, one character per byte (as latin1 decodes them: no two ids
 * collide). Built in JavaScript for the usual 16-byte UUID: this runs for every command.
 */
export function sessionIdKey(id: unknown): string | undefined {
  if (!(id instanceof Binary)) return undefined;
  const b = id.buffer;
  const n = id.position;
  if (n === 16)
    // prettier-ignore
    return String.fromCharCode(
      b[0]!, b[1]!, b[2]!, b[3]!, b[4]!, b[5]!, b[6]!, b[7]!,
      b[8]!, b[9]!, b[10]!, b[11]!, b[12]!, b[13]!, b[14]!, b[15]!,
    );
  return Buffer.from(b.buffer, b.byteOffset, n).toString('latin1');
}

interface Session {
  id: unknown;
  /** Milliseconds since the epoch: a Date is made only when sessions are listed. */
  lastUse: number;
}

export class SessionRegistry {
  private readonly sessions = new Map<string, Session>();

  /** Records the use of the command's session, if it names one. */
  touch(lsid: unknown, now = Date.now()): void {
    if (!isPlainObject(lsid)) return;
    const key = sessionIdKey(lsid.id);
    if (!key) return;
    const s = this.sessions.get(key);
    if (s) s.lastUse = now;
    else this.sessions.set(key, { id: lsid.id, lastUse: now });
    if (this.sessions.size > 10_000) this.expire(now);
  }

  end(ids: unknown[]): void {
    for (const lsid of ids) {
      const key = isPlainObject(lsid) ? sessionIdKey(lsid.id) : undefined;
      if (key) this.sessions.delete(key);
    }
  }

  private expire(now: number): void {
    for (const [k, s] of this.sessions) if (now - s.lastUse > SESSION_TIMEOUT_MS) this.sessions.delete(k);
  }

  /** The documents of $listLocalSessions. */
  list(now = Date.now()): Document[] {
    this.expire(now);
    return [...this.sessions.values()].map((s) => ({
      _id: { id: s.id, uid: NO_USER_UID },
      lastUse: new Date(s.lastUse),
    }));
  }
}
