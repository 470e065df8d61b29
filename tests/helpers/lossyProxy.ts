/**
 * A TCP proxy between the driver and the database that can lose one reply: it forwards a chosen
 * command to the server, then drops the server's answer and resets the client's connection — the
 * "the write landed but the reply never came" failure of a real network. Only for single-host URIs.
 */
import net from 'node:net';

export interface LossyProxy {
  uri: string;
  /** Lose the reply to the next command whose name and target collection match. Resolves when it has. */
  loseNextReply(command: string, collection: string): Promise<void>;
  close(): Promise<void>;
}

interface Armed {
  command: string;
  collection: string;
  done: () => void;
}

/** Split a byte stream into wire-protocol messages (each starts with its int32 length). */
function messageSplitter(onMessage: (msg: Buffer) => void): (chunk: Buffer) => void {
  let buf: Buffer = Buffer.alloc(0);
  return (chunk) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    while (buf.length >= 4) {
      const len = buf.readInt32LE(0);
      if (buf.length < len) break;
      onMessage(buf.subarray(0, len));
      buf = buf.subarray(len);
    }
  };
}

/** The command name and its string argument (the collection) of an OP_MSG's body section. */
function commandOf(msg: Buffer): { name: string; target: string } | null {
  const OP_MSG = 2013;
  if (msg.readInt32LE(12) !== OP_MSG || msg[20] !== 0) return null;
  let p = 21 + 4; // flags (4 bytes at 16), section kind at 20, then the body document's length
  const type = msg[p];
  p += 1;
  const end = msg.indexOf(0, p);
  const name = msg.toString('utf8', p, end);
  p = end + 1;
  let target = '';
  if (type === 0x02) {
    const len = msg.readInt32LE(p);
    target = msg.toString('utf8', p + 4, p + 4 + len - 1);
  }
  return { name, target };
}

export async function startLossyProxy(upstreamUri: string): Promise<LossyProxy> {
  const m = /^mongodb:\/\/(?:[^@/]*@)?([^/,?]+)(?:[/?]|$)/.exec(upstreamUri);
  if (!m) throw new Error(`lossy proxy needs a single-host mongodb:// URI, got ${upstreamUri}`);
  const [host, portText] = m[1]!.split(':');
  const upstream = { host: host!, port: Number(portText ?? 27017) };
  let armed: Armed | null = null;
  const sockets = new Set<net.Socket>();

  const server = net.createServer((client) => {
    const db = net.connect(upstream);
    sockets.add(client).add(db);
    const doomed = new Set<number>();
    client.on(
      'data',
      messageSplitter((msg) => {
        const cmd = commandOf(msg);
        if (armed && cmd && cmd.name === armed.command && cmd.target === armed.collection) {
          doomed.add(msg.readInt32LE(4)); // requestID
        }
        db.write(msg);
      }),
    );
    db.on(
      'data',
      messageSplitter((msg) => {
        if (doomed.has(msg.readInt32LE(8))) {
          // The server has executed the command; its answer is lost with the connection.
          const a = armed;
          armed = null;
          client.resetAndDestroy();
          db.destroy();
          a?.done();
          return;
        }
        client.write(msg);
      }),
    );
    const end = () => {
      client.destroy();
      db.destroy();
      sockets.delete(client);
      sockets.delete(db);
    };
    client.on('error', end).on('close', end);
    db.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    uri: `mongodb://127.0.0.1:${port}/?directConnection=true`,
    loseNextReply(command, collection) {
      return new Promise<void>((done) => {
        armed = { command, collection, done };
      });
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
