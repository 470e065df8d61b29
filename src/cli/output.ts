/**
 * How jobctl prints: human tables (cli-table3) by default, one JSON document with --json.
 * Every command hands its data to emit() together with a renderer for humans, so both forms
 * always carry the same facts.
 */
import Table from 'cli-table3';
import { redact } from '../redact.js';

export interface Printer {
  json: boolean;
  /** Print `data` as JSON, or `human()` as text. */
  emit(data: unknown, human: () => string): void;
  /** A note for humans on stderr (not printed with --json, which keeps stdout parseable). */
  note(text: string): void;
}

export function createPrinter(json: boolean, out: NodeJS.WritableStream = process.stdout): Printer {
  return {
    json,
    emit(data, human) {
      out.write(json ? `${toJson(data)}\n` : `${human()}\n`);
    },
    note(text) {
      if (!json) process.stderr.write(`${redact(text)}\n`);
    },
  };
}

export function toJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, v: unknown) => {
      if (typeof v === 'bigint') return v.toString();
      return v;
    },
    2,
  );
}

export function table(head: string[], rows: unknown[][]): string {
  const t = new Table({ head, style: { head: [], border: [] } });
  for (const r of rows) t.push(r.map(cell));
  return t.toString();
}

/** Two columns, key and value. */
export function keyValues(pairs: [string, unknown][]): string {
  const t = new Table({ style: { head: [], border: [] } });
  for (const [k, v] of pairs) t.push({ [k]: cell(v) });
  return t.toString();
}

export function cell(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (v instanceof Date) return formatDate(v);
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export function formatDate(d: Date | string | null | undefined): string {
  if (!d) return '';
  const date = d instanceof Date ? d : new Date(d);
  return Number.isNaN(date.getTime())
    ? String(d)
    : date
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d{3}Z$/, 'Z');
}

export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${(ms / 60_000).toFixed(1)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}
