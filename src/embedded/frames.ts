/**
 * Cuts a connection's byte stream into messages by their length prefix. Chunks are kept as they come
 * and joined once per message, so a 48 MB message arriving in thousands of chunks is copied once, not
 * once per chunk; the next message's length is read once, however many chunks its prefix spans.
 */
import { validMessageLength } from './wire.js';

export interface Frames {
  /** Whole messages, in order, each in memory of its own (never a view of a socket chunk). */
  messages: Buffer[];
  /** Set when the next message announces a length mongod would not read; nothing after it is cut. */
  invalidLength?: number;
}

export class FrameReader {
  private chunks: Buffer[] = [];
  private size = 0;
  /** The length announced by the message being received, once its 4 bytes are here. */
  private expected: number | undefined;
  private failed = false;

  push(chunk: Buffer): Frames {
    const messages: Buffer[] = [];
    if (this.failed || chunk.length === 0) return { messages };
    this.chunks.push(chunk);
    this.size += chunk.length;
    for (;;) {
      if (this.expected === undefined) {
        if (this.size < 4) break;
        const length = this.readLength();
        if (!validMessageLength(length)) {
          this.failed = true;
          this.chunks = [];
          this.size = 0;
          return { messages, invalidLength: length };
        }
        this.expected = length;
      }
      if (this.size < this.expected) break;
      messages.push(this.take(this.expected));
      this.expected = undefined;
    }
    return { messages };
  }

  /** The int32 at the start of the stream, read across as many chunks as it spans (at most 4). */
  private readLength(): number {
    const first = this.chunks[0] as Buffer;
    if (first.length >= 4) return first.readInt32LE(0);
    const head = Buffer.alloc(4);
    let at = 0;
    for (let i = 0; at < 4; i++) at += (this.chunks[i] as Buffer).copy(head, at, 0, 4 - at);
    return head.readInt32LE(0);
  }

  /**
   * The next `n` bytes (n <= size), removed from the stream, in a buffer of their own: values decoded
   * from a message (Binary) keep its memory, which must not be a whole socket read.
   */
  private take(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const c = this.chunks[0] as Buffer;
      const part = Math.min(c.length, n - at);
      c.copy(out, at, 0, part);
      at += part;
      if (part === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(part);
    }
    this.size -= n;
    return out;
  }
}
