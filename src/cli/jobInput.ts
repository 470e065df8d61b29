/**
 * What `jobctl enqueue` reads: --params (inline JSON, @file.json, or @- for stdin) and --file jobs.ndjson
 * (one job per line). Everything is checked before anything is written; each problem names the flag or
 * the line and field, the value, and what is allowed.
 */
import { InvalidArgumentError } from 'commander';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ValidationError } from '../errors.js';
import type { EnqueueOptions } from '../types.js';
import { formatValue } from '../config/validate.js';

export type Params = Record<string, unknown>;

/** --params as parsed: the object, or "read it from stdin" (read later, asynchronously). */
export type ParamsOption = { params: Params } | { stdin: true };

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'string' ? 'a string' : `a ${typeof v}`;
}

/** The reason a parsed value is not usable as params, or undefined when it is. */
export function paramsProblem(value: unknown): string | undefined {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) return undefined;
  return `must be a JSON object ({ ... }); got ${kindOf(value)}`;
}

function parseParamsText(text: string, where: string): Params {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`${where}is not valid JSON (${(err as Error).message}).`);
  }
  const problem = paramsProblem(value);
  if (problem) throw new InvalidArgumentError(`${where}${problem}.`);
  return value as Params;
}

/** commander parser for --params <json | @file | @->. */
export function paramsOption(value: string): ParamsOption {
  if (value === '@-') return { stdin: true };
  if (value.startsWith('@')) {
    const file = value.slice(1);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a folder' : code;
      throw new InvalidArgumentError(`cannot read the params file ${file}: ${why}.`);
    }
    return { params: parseParamsText(text, `the params file ${file} `) };
  }
  return { params: parseParamsText(value, '') };
}

/** All of stdin as text. */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** --params @-: the object read from stdin, with the same messages as the other forms. */
export async function paramsFromStdin(): Promise<Params> {
  try {
    return parseParamsText(await readStdin(), 'stdin ');
  } catch (err) {
    throw new ValidationError(`option '--params <json>' argument '@-' is invalid. ${(err as Error).message}`);
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const int = (min: number, max: number) => {
  const msg = `must be an integer from ${min} to ${max}`;
  return z.number({ error: msg }).int({ error: msg }).min(min, { error: msg }).max(max, { error: msg });
};
const text = z
  .string({ error: 'must be a non-empty string' })
  .min(1, { error: 'must be a non-empty string' });

/** One line of a jobs file: the fields of `jobctl enqueue`, by their library names. */
const lineSchema = z
  .strictObject({
    type: text,
    params: z.unknown().optional(),
    priority: int(1, 100).optional(),
    runAt: z
      .string({ error: 'must be an ISO 8601 date and time, e.g. 2026-01-31T12:00:00Z' })
      .refine((v) => /^\d{4}-\d{2}-\d{2}/.test(v) && !Number.isNaN(new Date(v).getTime()), {
        error: 'must be an ISO 8601 date and time, e.g. 2026-01-31T12:00:00Z',
      })
      .optional(),
    delayMs: int(0, Number.MAX_SAFE_INTEGER).optional(),
    maxAttempts: int(1, 1000).optional(),
    timeoutMs: int(1, Number.MAX_SAFE_INTEGER).optional(),
    dedupeKey: text.optional(),
    tags: z.array(text, { error: 'must be a list of non-empty strings' }).optional(),
    datasetUuid: z
      .string({ error: 'must be a UUID like 123e4567-e89b-12d3-a456-426614174000' })
      .regex(UUID, { error: 'must be a UUID like 123e4567-e89b-12d3-a456-426614174000' })
      .optional(),
  })
  .superRefine((v, ctx) => {
    const problem = v.params === undefined ? undefined : paramsProblem(v.params);
    if (problem) ctx.addIssue({ code: 'custom', path: ['params'], message: problem });
    if (v.runAt !== undefined && v.delayMs !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['delayMs'], message: 'give runAt or delayMs, not both' });
    }
  });

export const JOB_LINE_FIELDS = Object.keys(lineSchema.shape);

export interface JobLine {
  /** 1-based line number in the file. */
  line: number;
  type: string;
  params: Params;
  options: EnqueueOptions;
}

const MAX_PROBLEMS = 20;

/**
 * Parse and check a whole jobs file (NDJSON). Blank lines are skipped. Throws one ValidationError listing
 * the bad lines (at most 20) when any line is bad, so nothing is written.
 */
export function parseJobLines(content: string, label: string): JobLine[] {
  const jobs: JobLine[] = [];
  const problems: string[] = [];
  const lines = content.split('\n');
  lines.forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      problems.push(`${label} line ${line}: not valid JSON (${(err as Error).message})`);
      return;
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      problems.push(
        `${label} line ${line}: must be a JSON object with a "type" (and "params", ...); got ${kindOf(value)}`,
      );
      return;
    }
    const parsed = lineSchema.safeParse(value);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) {
        if (issue.code === 'unrecognized_keys') {
          for (const key of issue.keys) {
            problems.push(
              `${label} line ${line}: "${key}" is not a field of a job; the fields are ${JOB_LINE_FIELDS.join(', ')}`,
            );
          }
          continue;
        }
        const field = issue.path.map(String).join('.');
        let given: unknown = value;
        for (const p of issue.path) given = (given as Record<PropertyKey, unknown> | undefined)?.[p];
        problems.push(
          `${label} line ${line}: ${field} = ${formatValue(given)} is not allowed: ${issue.message}`,
        );
      }
      return;
    }
    const v = parsed.data;
    jobs.push({
      line,
      type: v.type,
      params: (v.params as Params | undefined) ?? {},
      options: {
        ...(v.priority !== undefined ? { priority: v.priority } : {}),
        ...(v.runAt !== undefined ? { runAt: new Date(v.runAt) } : {}),
        ...(v.delayMs !== undefined ? { delayMs: v.delayMs } : {}),
        ...(v.maxAttempts !== undefined ? { maxAttempts: v.maxAttempts } : {}),
        ...(v.timeoutMs !== undefined ? { timeoutMs: v.timeoutMs } : {}),
        ...(v.dedupeKey !== undefined ? { dedupeKey: v.dedupeKey } : {}),
        ...(v.tags !== undefined ? { tags: v.tags } : {}),
        ...(v.datasetUuid !== undefined ? { datasetUuid: v.datasetUuid.toLowerCase() } : {}),
      },
    });
  });
  if (problems.length) {
    const shown = problems.slice(0, MAX_PROBLEMS);
    if (problems.length > MAX_PROBLEMS) shown.push(`... and ${problems.length - MAX_PROBLEMS} more`);
    throw new ValidationError(`nothing was enqueued:\n${shown.join('\n')}`);
  }
  if (jobs.length === 0) throw new ValidationError(`${label} holds no jobs (every line is blank)`);
  return jobs;
}
