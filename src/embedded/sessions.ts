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

interface Session {
  id: unknown;
  lastUse: Date;
}

export class SessionRegistry {
  private readonly sessions = new Map<string, Session>();

  private static key(id: unknown): string | undefined {
    if (id instanceof Binary) return Buffer.from(id.buffer.subarray(0, id.position)).toString('hex');
    return undefined;
  }

  /** Records the use of the command's session, if it names one. */
  touch(lsid: unknown, now = new Date()): void {
    if (!isPlainObject(lsid)) return;
    const key = SessionRegistry.key(lsid.id);
    if (!key) return;
    const s = this.sessions.get(key);
    if (s) s.lastUse = now;
    else this.sessions.set(key, { id: lsid.id, lastUse: now });
    if (this.sessions.size > 10_000) this.expire(now);
  }

  end(ids: unknown[]): void {
    for (const lsid of ids) {
      const key = isPlainObject(lsid) ? SessionRegistry.key(lsid.id) : undefined;
      if (key) this.sessions.delete(key);
    }
  }

  private expire(now: Date): void {
    for (const [k, s] of this.sessions)
      if (now.getTime() - s.lastUse.getTime() > SESSION_TIMEOUT_MS) this.sessions.delete(k);
  }

  /** The documents of $listLocalSessions. */
  list(now = new Date()): Document[] {
    this.expire(now);
    return [...this.sessions.values()].map((s) => ({
      _id: { id: s.id, uid: NO_USER_UID },
      lastUse: s.lastUse,
    }));
  }
}
