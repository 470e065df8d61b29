/** Built-in job type `echo`: returns its params as the job's result. */
export default function echo(params: unknown): unknown {
  return params;
}
