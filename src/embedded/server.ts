/**
 * TCP connections: frames incoming messages, runs their commands one after another per
 * connection, and writes the replies.
 */
import net from 'node:net';
import type { Document } from 'bson';
import { runCommand } from './commands.js';
import type { CommandContext, ServerInfo } from './commandContext.js';
import type { CursorManager } from './cursor.js';
import type { Engine } from './engine.js';
import {
  MAX_MESSAGE_SIZE,
  MSG_MORE_TO_COME,
  ProtocolError,
  encodeOpMsg,
  encodeOpReply,
  parseMessage,
} from './wire.js';

export interface WireServerDeps {
  engine: Engine;
  cursors: CursorManager;
  info: ServerInfo;
  log: (msg: string) => void;
}

let nextConnectionId = 1;

/** How long a shutdown waits for a client to take its last replies before the connection is cut. */
const DRAIN_GRACE_MS = 5_000;

interface Connection {
  socket: net.Socket;
  /** Settles once every message received so far has been answered. */
  idle(): Promise<void>;
}

export class WireServer {
  private readonly server: net.Server;
  private readonly connections = new Set<Connection>();
  private closing = false;

  constructor(private readonly deps: WireServerDeps) {
    this.server = net.createServer((socket) => this.accept(socket));
  }

  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  /**
   * Stops accepting connections and reading requests; every request already received is answered and
   * its reply flushed before its connection is ended. Call `beforeDrain` to make waiting commands
   * (change stream getMores) answer at once.
   */
  async close(beforeDrain: () => void = () => {}): Promise<void> {
    this.closing = true;
    const listening = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.connections) c.socket.pause();
    beforeDrain();
    await Promise.all([...this.connections].map((c) => this.drain(c)));
    await listening;
  }

  private async drain(c: Connection): Promise<void> {
    await c.idle();
    const { socket } = c;
    if (socket.destroyed) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => socket.destroy(), DRAIN_GRACE_MS);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      // end() flushes the replies still queued, then half-closes; the client closes its side in turn,
      // which a paused socket would never read (requests arriving now are dropped by the data handler).
      socket.resume();
      socket.end(() => socket.destroy());
    });
  }

  private accept(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    const ctx: Omit<CommandContext, 'db'> = {
      engine: this.deps.engine,
      cursors: this.deps.cursors,
      server: this.deps.info,
      connectionId: nextConnectionId++,
    };
    let buffered: Buffer[] = [];
    let size = 0;
    let chain: Promise<void> = Promise.resolve();
    const connection: Connection = { socket, idle: () => chain.catch(() => {}) };
    this.connections.add(connection);
    socket.on('data', (chunk: Buffer) => {
      if (this.closing) return;
      buffered.push(chunk);
      size += chunk.length;
      let all = buffered.length === 1 ? (buffered[0] as Buffer) : Buffer.concat(buffered, size);
      while (all.length >= 4) {
        const len = all.readInt32LE(0);
        if (len < 16 || len > MAX_MESSAGE_SIZE) {
          this.deps.log(`closing connection ${ctx.connectionId}: invalid message length ${len}`);
          socket.destroy();
          return;
        }
        if (all.length < len) break;
        const msg = all.subarray(0, len);
        all = all.subarray(len);
        chain = chain.then(() => this.handle(socket, msg, ctx));
      }
      buffered = all.length > 0 ? [all] : [];
      size = all.length;
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.connections.delete(connection));
  }

  private async handle(socket: net.Socket, msg: Buffer, ctx: Omit<CommandContext, 'db'>): Promise<void> {
    if (socket.destroyed) return;
    let request;
    try {
      request = parseMessage(Buffer.from(msg));
    } catch (err) {
      this.deps.log(
        `closing connection ${ctx.connectionId}: ${err instanceof ProtocolError ? err.message : String(err)}`,
      );
      socket.destroy();
      return;
    }
    if (request.kind === 'query') {
      const dbName = request.collection.split('.')[0] ?? 'admin';
      const reply = await runCommand(legacyCommand(request.command), ctx, dbName);
      if (!socket.destroyed) socket.write(encodeOpReply(request.header.requestId, reply));
      return;
    }
    const reply = await runCommand(request.command, ctx);
    if (request.flags & MSG_MORE_TO_COME) return;
    if (!socket.destroyed) socket.write(encodeOpMsg(request.header.requestId, reply));
  }
}

/** OP_QUERY handshakes may spell the command in lower case. */
function legacyCommand(cmd: Document): Document {
  return cmd;
}
