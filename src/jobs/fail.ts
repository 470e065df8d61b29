import { DoNotRetryError } from '../errors.js';

/** Built-in job type `fail`: throws, to demonstrate retries; `doNotRetry: true` fails the job at once. */
export default function fail(params: { message?: unknown; doNotRetry?: unknown } | null): never {
  const message = typeof params?.message === 'string' ? params.message : 'failed on purpose';
  if (params?.doNotRetry === true) throw new DoNotRetryError(message);
  throw new Error(message);
}
