/** Built-in job type `noop`: does nothing, returns at once. For demos and throughput benchmarks. */
export default function noop(): null {
  return null;
}
