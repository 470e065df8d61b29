import { defineJobType } from '../defineJobType.js';

/** Built-in job type `noop`: does nothing, returns at once. For demos and throughput benchmarks. */
export default defineJobType({
  name: 'noop',
  description: 'Does nothing and returns null at once (demos, throughput benchmarks).',
  // Built on first use, with the zod it is given: an isolated child running this type never loads zod.
  schemas: (z) => ({
    input: z.unknown(),
    output: z.null(),
  }),
  handler: () => null,
});
