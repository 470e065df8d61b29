/**
 * Cuts a connection's byte stream into messages by their length prefix. Chunks are kept as they come
 * and joined once per message, so a 48 MB message arriving in thousands of chunks is copied once, not
 * once per chunk.
 */
import { validMessageLength } from './wire.js';

export interface Frames {
  /** Whole messages, in order. */
  messages: Buffer[];
  /** Set when the next message announces a length mongod would not read; nothing after it is cut. */
  invalidLength?: number;
}

export class FrameReader {
  private chunks: Buffer[] = [];
  private size = 0;
  private failed = false;

  push(chunk: Buffer): Frames {
    const messages: Buffer[] = [];
    if (this.failed) return { messages };
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size >= 4) {
      const length = this.peekLength();
      if (!validMessageLength(length)) {
        this.failed = true;
        this.chunks = [];
        this.size = 0;
        return { messages, invalidLength: length };
      }
      if (this.size < length) break;
      messages.push(this.take(length));
    }
    return { messages };
  }

  private peekLength(): number {
    const first = this.chunks[0] as Buffer;
    if (first.length >= 4) return first.readInt32LE(0);
    const head = Buffer.concat(this.chunks, Math.min(this.size, 8));
    return head.readInt32LE(0);
  }

  /** The next `n` bytes (n <= size), removed from the stream. */
  private take(n: number): Buffer {
    const first = this.chunks[0] as Buffer;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const c = this.chunks[0] as Buffer;
        const part = Math.min(c.length, n - at);
        c.copy(out, at, 0, part);
        at += part;
        if (part === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(part);
      }
    }
    this.size -= n;
    return out;
  }
}
