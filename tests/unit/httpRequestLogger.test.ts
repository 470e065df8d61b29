import Fastify, { LogController, type FastifyBaseLogger } from 'fastify';
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { lazyRequestLogger } from '../../src/http/requestLogger.js';

/** A pino logger whose lines are kept, parsed. */
function capture(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n'))
        if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, sink), lines };
}

describe('lazyRequestLogger', () => {
  it('makes the child only when a request logs, with its reqId and the parent bindings', async () => {
    const { logger, lines } = capture();
    let childrenMade = 0;
    /** The server's logger as the factory gets it, counting the children made of it. */
    const counting = (parent: FastifyBaseLogger): FastifyBaseLogger =>
      new Proxy(parent, {
        get(target, key, recv) {
          if (key !== 'child') return Reflect.get(target, key, recv) as unknown;
          return (...args: Parameters<FastifyBaseLogger['child']>) => {
            childrenMade++;
            return target.child(...args);
          };
        },
      });
    const app = Fastify({
      loggerInstance: logger.child({ component: 'http' }),
      logController: new LogController({ disableRequestLogging: true }),
      childLoggerFactory: (parent, bindings, opts) => lazyRequestLogger(counting(parent), bindings, opts),
    });
    app.get('/quiet', async () => ({ ok: true }));
    app.get('/loud', async (req) => {
      req.log.warn({ n: 1 }, 'first');
      req.log.info('second');
      expect(req.log.level).toBe('info');
      return { ok: true };
    });
    try {
      expect((await app.inject('/quiet')).statusCode).toBe(200);
      expect((await app.inject('/quiet')).statusCode).toBe(200);
      expect(childrenMade).toBe(0);
      expect((await app.inject('/loud')).statusCode).toBe(200);
      expect(childrenMade).toBe(1);
      expect(lines.map((l) => [l.msg, l.level, l.component, typeof l.reqId, l.n])).toEqual([
        ['first', 40, 'http', 'string', 1],
        ['second', 30, 'http', 'string', undefined],
      ]);
      expect(lines[0]!.reqId).toBe(lines[1]!.reqId);
    } finally {
      await app.close();
    }
  });
});
