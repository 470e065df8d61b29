/**
 * data_aggregation's in-memory groups: rows go into a Map keyed by the JSON text of their group values.
 * A line of an NDJSON file takes the fast path when it is a flat object (FlatScanner reads only the
 * fields the job names, RawKeys finds the group from their raw bytes); any other line is parsed with
 * JSON.parse and grouped the plain way. Both paths give the same groups and states.
 */
import { parseLine } from '../records.js';
import { FlatScanner, MISSING, NULL, NUMBER, STRING } from './flatScan.js';
import { getter, type Metrics, type State } from './metrics.js';
import { RawKeys } from './rawKeys.js';

export interface Group {
  n: number;
  st: State[];
}

export class GroupRows {
  groups = new Map<string, Group>();
  /** Groups plus distinct values held (what the spill limit counts). */
  entries = 0;
  private readonly keyOf: ((rec: Record<string, unknown>) => unknown)[];
  private readonly scanner: FlatScanner | null;
  /** Scanner field index of each group field, and of each metric's field (-1: count "*"). */
  private readonly groupField: number[] = [];
  private readonly metricField: number[] = [];
  private readonly raw = new RawKeys<Group>();
  private key = new Uint8Array(256);

  constructor(
    private readonly groupBy: readonly string[],
    private readonly metrics: Metrics,
  ) {
    this.keyOf = groupBy.map(getter);
    const fields: string[] = [];
    const index = (f: string): number => {
      const i = fields.indexOf(f);
      return i >= 0 ? i : fields.push(f) - 1;
    };
    for (const f of groupBy) this.groupField.push(index(f));
    for (const m of metrics.specs) this.metricField.push(m.field === '*' ? -1 : index(m.field));
    this.scanner = fields.every(FlatScanner.handles) ? new FlatScanner(fields) : null;
  }

  /** Empties the groups (after a spill). */
  reset(): void {
    this.groups = new Map();
    this.entries = 0;
    this.raw.clear();
  }

  /**
   * Adds line `line` of `path`, `buf[from, to)`; false for a blank line (skipped), a non-object
   * throws RecordLineError.
   */
  addLine(path: string, line: number, buf: Buffer, from: number, to: number): boolean {
    const sc = this.scanner;
    if (sc === null || !sc.scan(buf, from, to)) {
      const record = parseLine(path, line, buf.toString('utf8', from, to));
      if (record) this.addRecord(record);
      return record !== null;
    }
    // The group's raw key: each field's kind, then its value's text (a string's with its quotes). The
    // kinds delimit it: a kind byte is never part of a value's text.
    let len = 0;
    for (const f of this.groupField) {
      const s = sc.start[f]!;
      const kind = sc.kind[f]!;
      const n = kind === STRING || kind === NUMBER ? sc.end[f]! - s : 0;
      if (len + n + 1 > this.key.length) {
        const bigger = new Uint8Array(Math.max(this.key.length * 2, len + n + 1));
        bigger.set(this.key.subarray(0, len));
        this.key = bigger;
      }
      this.key[len++] = kind;
      for (let j = 0; j < n; j++) this.key[len++] = buf[s + j]!;
    }
    const h = RawKeys.hash(this.key, len);
    let g = this.raw.get(this.key, len, h);
    if (g === undefined) {
      const values = this.groupField.map((f) => (sc.kind[f] === MISSING ? null : sc.valueOf(f)));
      g = this.group(JSON.stringify(values));
      this.raw.set(this.key, len, h, g);
    }
    g.n += 1;
    let added = 0;
    for (let i = 0; i < this.metricField.length; i++) {
      const f = this.metricField[i]!;
      if (f < 0) added += this.metrics.addNumber(g.st, i, 1);
      else if (sc.kind[f] === NUMBER) added += this.metrics.addNumber(g.st, i, sc.num[f]!);
      else if (sc.kind[f] !== MISSING && sc.kind[f] !== NULL)
        added += this.metrics.addValue(g.st, i, sc.valueOf(f));
    }
    this.entries += added;
    return true;
  }

  /** Adds a parsed record. */
  addRecord(record: Record<string, unknown>): void {
    const values = this.keyOf.map((g) => g(record) ?? null);
    const g = this.group(JSON.stringify(values));
    g.n += 1;
    this.entries += this.metrics.add(g.st, record);
  }

  private group(key: string): Group {
    let g = this.groups.get(key);
    if (g === undefined) {
      g = { n: 0, st: this.metrics.fresh(true) };
      this.groups.set(key, g);
      this.entries += 1;
    }
    return g;
  }
}
