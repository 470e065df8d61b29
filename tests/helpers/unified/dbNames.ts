/**
 * Database names of a spec run. Each case's databases get a per-run suffix, so runs (and other test
 * files) sharing one server never collide; what the server reports back (namespaces in change events,
 * `databaseName` of command events, `$out` targets, error messages) is translated back to the names
 * the case file uses before anything is matched, so expectations written for the real names still hold.
 */
import { randomBytes } from 'node:crypto';
import type { Document } from 'mongodb';
import { bsonType } from './match.js';

const SHARED = new Set(['admin', 'config', 'local']);

export class DbNames {
  private readonly suffix = randomBytes(3).toString('hex');
  private readonly toOriginal = new Map<string, string>();
  private pattern: RegExp | undefined;

  /** The real name for a case's database (admin, config and local are shared and keep theirs). */
  map = (name: string): string => {
    if (SHARED.has(name)) return name;
    const mapped = `${name}_${this.suffix}`;
    if (!this.toOriginal.has(mapped)) {
      this.toOriginal.set(mapped, name);
      this.pattern = undefined;
    }
    return mapped;
  };

  /** Every real name this run has handed out. */
  get used(): string[] {
    return [...this.toOriginal.keys()];
  }

  /** True when `name` is one of this run's databases (or a shared one). */
  owns(name: string): boolean {
    return SHARED.has(name) || this.toOriginal.has(name);
  }

  /** A string with every real database name of this run replaced by the case file's name. */
  unmapString(text: string): string {
    if (this.toOriginal.size === 0 || !text.includes(this.suffix)) return text;
    this.pattern ??= new RegExp(
      [...this.toOriginal.keys()]
        .sort((a, b) => b.length - a.length)
        .map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
        .join('|'),
      'g',
    );
    return text.replace(this.pattern, (m) => this.toOriginal.get(m) ?? m);
  }

  /**
   * A copy of a value as the server returned it (or the driver sent it), with database names translated
   * back. Plain documents, Maps and arrays are copied as plain documents and arrays; BSON values, dates
   * and bytes are kept as they are.
   */
  unmap<T>(value: T): T {
    return this.walk(value) as T;
  }

  private walk(value: unknown): unknown {
    if (typeof value === 'string') return this.unmapString(value);
    if (Array.isArray(value)) return value.map((v) => this.walk(v));
    // The driver sends some ordered documents (a find's sort) as Maps.
    if (value instanceof Map) {
      const out: Document = {};
      for (const [k, v] of value) out[String(k)] = this.walk(v);
      return out;
    }
    if (
      value === null ||
      typeof value !== 'object' ||
      value instanceof Date ||
      value instanceof RegExp ||
      value instanceof Uint8Array ||
      bsonType(value) !== undefined ||
      Object.getPrototypeOf(value) !== Object.prototype
    )
      return value;
    const out: Document = {};
    for (const [k, v] of Object.entries(value as Document)) out[k] = this.walk(v);
    return out;
  }
}
