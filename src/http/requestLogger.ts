/**
 * Each request's logger (req.log), made only when something logs through it. fastify otherwise makes a
 * pino child per request (its bindings serialized into a string, a new object on the logger's
 * prototype chain) although request lines are off and a request that succeeds logs nothing: on
 * GET /api/jobs/{id} that was about 1% of the server thread. A request that does log gets the same
 * child, with the same bindings (its reqId), on its first line.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { Bindings, ChildLoggerOptions } from 'fastify/types/logger.js';

type Level = 'info' | 'error' | 'debug' | 'fatal' | 'warn' | 'trace' | 'silent';

class LazyRequestLogger {
  private made: FastifyBaseLogger | null = null;

  constructor(
    private readonly parent: FastifyBaseLogger,
    private readonly bindings: Bindings,
    private readonly opts: ChildLoggerOptions,
  ) {}

  private logger(): FastifyBaseLogger {
    return (this.made ??= this.parent.child(this.bindings, this.opts));
  }

  get level(): string {
    return this.logger().level;
  }
  set level(level: string) {
    this.logger().level = level;
  }

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.logger().child(bindings, options);
  }

  private call(level: Level, args: unknown[]): void {
    const l = this.logger();
    (l[level] as (...a: unknown[]) => void).apply(l, args);
  }
  info(...args: unknown[]): void {
    this.call('info', args);
  }
  error(...args: unknown[]): void {
    this.call('error', args);
  }
  debug(...args: unknown[]): void {
    this.call('debug', args);
  }
  fatal(...args: unknown[]): void {
    this.call('fatal', args);
  }
  warn(...args: unknown[]): void {
    this.call('warn', args);
  }
  trace(...args: unknown[]): void {
    this.call('trace', args);
  }
  silent(...args: unknown[]): void {
    this.call('silent', args);
  }
}

/** fastify's childLoggerFactory option: a request logger that is made on its first use. */
export function lazyRequestLogger(
  logger: FastifyBaseLogger,
  bindings: Bindings,
  opts: ChildLoggerOptions,
): FastifyBaseLogger {
  return new LazyRequestLogger(logger, bindings, opts) as unknown as FastifyBaseLogger;
}
