/**
 * api_ingestion's HTTP client (Node's fetch): one request per call, spaced by a rate limit, with a
 * timeout, and retried with backoff on 429, 5xx, timeouts and network errors, honouring Retry-After
 * (seconds or an HTTP date). Redirects are refused: following one would send the source's secret
 * headers wherever the server points.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { DataJobError, abortReason, ToolAbortedError } from '../../lib/errors.js';

export interface HttpClientOptions {
  /** Requests per second at most (undefined: no limit). */
  requestsPerSecond?: number | undefined;
  timeoutMs: number;
  /** Retries of one request after its first try. */
  maxRetries: number;
  /** A Retry-After longer than this fails the attempt (retryable): the job's own retry waits instead. */
  maxRetryAfterMs: number;
  signal: AbortSignal;
  /** Hides secrets in any text that leaves this module. */
  mask(text: string): string;
  log(msg: string, extra?: Record<string, unknown>): void;
  random?: () => number;
  now?: () => number;
}

export interface HttpResponse {
  status: number;
  headers: Headers;
  text: string;
}

export interface HttpStats {
  requests: number;
  retries: number;
}

const BACKOFF_BASE_MS = 250;
const BACKOFF_CAP_MS = 30_000;

/** Retry-After as milliseconds from now: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfterMs(value: string | null, now: number): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

function retryable(status: number): boolean {
  return status === 429 || (status >= 500 && status !== 501 && status !== 505);
}

export class HttpClient {
  readonly stats: HttpStats = { requests: 0, retries: 0 };
  private nextAt = 0;
  private readonly intervalMs: number;
  private readonly random: () => number;
  private readonly now: () => number;

  constructor(private readonly o: HttpClientOptions) {
    this.intervalMs = o.requestsPerSecond ? 1000 / o.requestsPerSecond : 0;
    this.random = o.random ?? Math.random;
    this.now = o.now ?? Date.now;
  }

  /** Waits for the rate limit's next slot. */
  private async slot(): Promise<void> {
    if (this.intervalMs === 0) return;
    const now = this.now();
    const at = Math.max(now, this.nextAt);
    this.nextAt = at + this.intervalMs;
    if (at > now) await sleep(at - now, undefined, { signal: this.o.signal });
  }

  /** `what` names the request in messages (e.g. "GET /orders?page=3", secrets masked). */
  async request(url: URL, init: RequestInit, what: string): Promise<HttpResponse> {
    for (let attempt = 0; ; attempt++) {
      let why: string;
      let waitMs: number | undefined;
      try {
        await this.slot();
        this.stats.requests += 1;
        const signal = AbortSignal.any([this.o.signal, AbortSignal.timeout(this.o.timeoutMs)]);
        const res = await fetch(url, { ...init, signal, redirect: 'manual' });
        const text = await res.text();
        if (res.status >= 200 && res.status < 300) return { status: res.status, headers: res.headers, text };
        if (res.status >= 300 && res.status < 400) {
          throw new DataJobError(
            'HttpRedirectError',
            this.o.mask(
              `${what}: the server redirects (HTTP ${res.status}) to ${res.headers.get('location') ?? '(no Location)'}; jobd does not follow redirects (the source's headers would go along): set the source's baseUrl to the final address`,
            ),
            { retryable: false },
          );
        }
        const body = this.o.mask(text.slice(0, 300).replace(/\s+/g, ' ').trim());
        if (!retryable(res.status)) {
          throw new DataJobError(
            'HttpStatusError',
            `${what}: HTTP ${res.status}${body ? `: ${body}` : ''} (not retried: only 429 and 5xx are)`,
            { retryable: false, details: { status: res.status } },
          );
        }
        why = `HTTP ${res.status}`;
        waitMs = retryAfterMs(res.headers.get('retry-after'), this.now());
      } catch (err) {
        if (err instanceof DataJobError) throw err;
        if (this.o.signal.aborted) throw new ToolAbortedError('api_ingestion', abortReason(this.o.signal));
        const e = err as Error & { cause?: { code?: string; message?: string } };
        why =
          e.name === 'TimeoutError'
            ? `no answer within ${this.o.timeoutMs} ms`
            : this.o.mask(`${e.message}${e.cause ? ` (${e.cause.code ?? e.cause.message ?? ''})` : ''}`);
      }
      if (attempt >= this.o.maxRetries) {
        throw new DataJobError(
          'HttpRetriesExhaustedError',
          `${what}: ${why}, still after ${attempt + 1} tries (the job's next attempt resumes from the last page written)`,
          { retryable: true, code: 'JOBD_HTTP_FAILED' },
        );
      }
      if (waitMs !== undefined && waitMs > this.o.maxRetryAfterMs) {
        throw new DataJobError(
          'HttpRetryAfterError',
          `${what}: ${why}, and the server asks to wait ${Math.ceil(waitMs / 1000)} s (more than ${Math.ceil(this.o.maxRetryAfterMs / 1000)} s): the job's next attempt resumes from the last page written`,
          { retryable: true, code: 'JOBD_HTTP_FAILED' },
        );
      }
      const delay =
        waitMs ?? Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt) * (0.5 + this.random() / 2);
      this.stats.retries += 1;
      this.o.log('api_ingestion: retrying a request', {
        request: what,
        reason: why,
        delayMs: Math.round(delay),
        retry: attempt + 1,
      });
      // The rate limit counts from the retry, not from the failed request.
      this.nextAt = Math.max(this.nextAt, this.now() + delay);
      try {
        await sleep(delay, undefined, { signal: this.o.signal });
      } catch {
        throw new ToolAbortedError('api_ingestion', abortReason(this.o.signal));
      }
    }
  }
}
