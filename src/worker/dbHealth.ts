/**
 * Tracks whether the database answers, per operation, so a long outage logs one 'db:error' per
 * failing operation (not one per retry) and one 'db:recovered' when it answers again.
 */
import type { Logger } from 'pino';
import type { DaemonEvents, TypedEmitter } from './events.js';
import { redactMongoUri } from '../store/index.js';

export class DbHealth {
  private readonly failing = new Map<string, number>();
  constructor(
    private readonly events: TypedEmitter<DaemonEvents>,
    private readonly logger: Logger,
  ) {}

  ok(op: string): void {
    const n = this.failing.get(op);
    if (n === undefined) return;
    this.failing.delete(op);
    this.logger.info({ op, failures: n }, 'database recovered');
    this.events.emit('db:recovered', { op });
  }

  error(op: string, error: unknown): void {
    const n = (this.failing.get(op) ?? 0) + 1;
    this.failing.set(op, n);
    const message = redactMongoUri(error instanceof Error ? error.message : String(error));
    if (n === 1) this.logger.error({ op, err: { name: (error as Error)?.name, message } }, 'database error');
    else this.logger.debug({ op, failures: n, message }, 'database still failing');
    this.events.emit('db:error', { op, error });
  }
}
