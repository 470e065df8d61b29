// BullMQ's sandboxed processor for the peers benchmark: a no-op, run in BullMQ's child processes.
export default async function noop() {
  return null;
}
