import { defineJobType } from '../defineJobType.js';

/** Built-in job type `echo`: returns its params as the job's result. */
export default defineJobType({
  name: 'echo',
  description: 'Returns its params as the result.',
  // Built on first use, with the zod it is given: an isolated child running this type never loads zod.
  schemas: (z) => ({
    input: z.unknown(),
    output: z.unknown(),
  }),
  handler: (input) => input,
});
