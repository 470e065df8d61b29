import { DoNotRetryError } from '../../errors.js';
import { defineJobType } from '../defineJobType.js';

/** Built-in job type `fail`: throws, to demonstrate retries; `doNotRetry: true` fails the job at once. */
export default defineJobType({
  name: 'fail',
  description: 'Throws, to show retries; with doNotRetry: true the job fails at once.',
  // Built on first use, with the zod it is given: an isolated child running this type never loads zod.
  schemas: (z) => ({
    input: z
      .strictObject({
        message: z.string().optional().describe('the error message (default "failed on purpose")'),
        doNotRetry: z.boolean().optional().describe('fail without further attempts'),
      })
      .nullable(),
    output: z.never(),
  }),
  handler: (input): never => {
    const message = input?.message ?? 'failed on purpose';
    if (input?.doNotRetry === true) throw new DoNotRetryError(message);
    throw new Error(message);
  },
});
