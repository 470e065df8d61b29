import { z } from 'zod';
import { defineJobType } from '../defineJobType.js';

/** Built-in job type `echo`: returns its params as the job's result. */
export default defineJobType({
  name: 'echo',
  description: 'Returns its params as the result.',
  input: z.unknown(),
  output: z.unknown(),
  handler: (input) => input,
});
