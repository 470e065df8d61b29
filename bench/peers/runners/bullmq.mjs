/**
 * BullMQ on the harness's Redis. options.sandboxed: the processor is a file that BullMQ runs in its
 * child processes (one per concurrent job); otherwise an in-process async function.
 */
import { fileURLToPath } from 'node:url';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { serve, runParams } from './protocol.mjs';

const p = runParams();
const url = new URL(p.url);
const connection = { host: url.hostname, port: Number(url.port) };
const processorFile = fileURLToPath(new URL('./noopProcessor.mjs', import.meta.url));
const name = p.database;
// BullMQ pipes every sandboxed child's output into this process's streams: one listener set per child.
process.stdout.setMaxListeners(0);
process.stderr.setMaxListeners(0);

let redis;
let queue;
let worker;

await serve({
  async setup() {
    redis = new Redis(p.url);
    await redis.flushall();
    queue = new Queue(name, { connection });
    await queue.waitUntilReady();
  },
  async enqueue(n) {
    await queue.addBulk(Array.from({ length: n }, () => ({ name: 'noop', data: {} })));
  },
  async start(count, fail) {
    worker = new Worker(name, p.options.sandboxed ? processorFile : async () => null, {
      connection,
      concurrency: p.concurrency,
    });
    worker.on('completed', () => count());
    worker.on('failed', (job, err) => fail(`${job?.id}: ${err?.message}`));
    worker.on('error', (err) => fail(err?.message ?? err));
  },
  async confirm() {
    return (await queue.getJobCounts('completed')).completed === p.jobs;
  },
  async close() {
    await worker?.close();
    await queue?.close();
    await redis?.flushall();
    await redis?.quit();
  },
});
