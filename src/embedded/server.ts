/**
 * TCP connections: frames incoming messages, runs their commands one after another per
 * connection, and writes the replies.
 */
import net from 'node:net';
import type { Document } from 'bson';
import { executeCommand } from './commands.js';
import type { CommandContext, ServerInfo } from './commandContext.js';
import type { CursorManager } from './cursor.js';
import type { Engine } from './engine.js';
import { encodeBody, encodeOpMsg, encodeOpReply, parseMessage, MSG_MORE_TO_COME } from './wire.js';
import { FrameReader } from './frames.js';

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
        // Once listening, an error accepting a connection (e.g. EMFILE) costs that connection only.
        this.server.on('error', (err) =>
          this.deps.log(`jobd-embedded: error accepting a connection: ${err.message}`),
        );
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
      log: this.deps.log,
    };
    const frames = new FrameReader();
    let chain: Promise<void> = Promise.resolve();
    const connection: Connection = { socket, idle: () => chain };
    this.connections.add(connection);
    socket.on('data', (chunk: Buffer) => {
      if (this.closing || socket.destroyed) return;
      const { messages, invalidLength } = frames.push(chunk);
      for (const msg of messages) {
        // Never rejects: a fault while serving one message closes this connection, and only it.
        chain = chain
          .then(() => this.handle(socket, msg, ctx))
          .catch((err: unknown) => {
            this.deps.log(
              `closing connection ${ctx.connectionId}: unexpected error while serving it: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
            );
            socket.destroy();
          });
      }
      if (invalidLength !== undefined) {
        // As mongod: a length it cannot read ends the connection (after what came before is answered).
        chain = chain.then(() => {
          this.deps.log(`closing connection ${ctx.connectionId}: invalid message length ${invalidLength}`);
          socket.destroy();
        });
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.connections.delete(connection));
  }

  private async handle(socket: net.Socket, msg: Buffer, ctx: Omit<CommandContext, 'db'>): Promise<void> {
    if (socket.destroyed) return;
    let request;
    try {
      // The frame reader gives each message memory of its own, so decoded values pin only their message.
      request = parseMessage(msg);
    } catch (err) {
      // A frame that cannot be answered (ProtocolError), or a fault while reading one.
      this.deps.log(
        `closing connection ${ctx.connectionId}: ${err instanceof Error ? err.message : String(err)}`,
      );
      socket.destroy();
      return;
    }
    // Commands of one connection run one after another, so its context can carry the current size.
    const withSize = ctx;
    withSize.requestSize = msg.length;
    const responseTo = request.header.requestId;
    if (request.kind === 'invalid') {
      if (request.silent || socket.destroyed) return;
      const reply: Document = request.error.toReply();
      const body = encodeBody(reply);
      socket.write(
        request.replyAs === 'msg' ? encodeOpMsg(responseTo, body) : encodeOpReply(responseTo, body),
      );
      return;
    }
    if (request.kind === 'query') {
      const dbName = request.collection.split('.')[0] ?? 'admin';
      const { body } = await executeCommand(request.command, withSize, dbName);
      if (!socket.destroyed) socket.write(encodeOpReply(responseTo, body));
      return;
    }
    const { body } = await executeCommand(request.command, withSize);
    if (request.flags & MSG_MORE_TO_COME) return;
    if (!socket.destroyed) socket.write(encodeOpMsg(responseTo, body));
  }
}
