/**
 * The TTL monitor: every interval, removes documents whose TTL-indexed date is older than
 * expireAfterSeconds, through the engine so deletions are logged and streamed.
 */
import { Rank, TypeBound, pathValues } from './bsonOrder.js';
import type { Engine } from './engine.js';
import { KEY_MAX, KEY_MIN } from './indexes.js';

export class TtlMonitor {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly engine: Engine,
    private readonly intervalMs: number,
    private readonly log: (msg: string) => void,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.sweep(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Removes every expired document now; returns how many. */
  sweep(now = new Date()): number {
    let removed = 0;
    // Writes are refused after a failed append (the failure has been reported once already).
    if (this.engine.writeFailure) return 0;
    try {
      for (const colls of [...this.engine.dbs.values()]) {
        for (const coll of [...colls.values()]) {
          for (const index of coll.indexes.values()) {
            const seconds = index.spec.expireAfterSeconds;
            if (seconds === undefined || index.fields.length !== 1) continue;
            const [path, dir] = index.fields[0] as [string, number];
            const cutoff = now.getTime() - seconds * 1000;
            const ids = new Set<string>();
            // Key order runs the other way on a descending index.
            const first = new TypeBound(Rank.Date, false);
            const last = new Date(cutoff);
            const lo = dir > 0 ? [first, KEY_MIN] : [last, KEY_MIN];
            const hi = dir > 0 ? [last, KEY_MAX] : [first, KEY_MAX];
            for (const id of index.scan(lo, hi, false)) ids.add(id);
            for (const id of ids) {
              const doc = coll.docs.get(id);
              if (!doc) continue;
              // An array of dates expires with its earliest date.
              const dates = pathValues(doc, path).values.filter((v): v is Date => v instanceof Date);
              if (dates.length === 0 || Math.min(...dates.map((d) => d.getTime())) > cutoff) continue;
              this.engine.delete(coll, doc);
              removed++;
            }
          }
        }
      }
      this.engine.commit();
    } catch (err) {
      // Nothing of a failed sweep stays behind to be committed with the next command.
      this.engine.abort();
      this.log(`jobd-embedded: TTL sweep failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    return removed;
  }
}
