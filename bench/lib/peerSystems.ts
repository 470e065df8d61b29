/**
 * The systems the peers benchmark can run. Each is one runner in bench/peers/runners/ with its
 * options, the backing server it needs and the Node it runs on. Adding a system is one entry here.
 */
export type ServerKind = 'embedded' | 'redis' | 'postgresql';

export interface RunShape {
  jobs: number;
  concurrency: number;
}

export interface PeerSystem {
  name: string;
  /** What the row is, for the JSON. */
  label: string;
  /** File in bench/peers/runners/. */
  runner: string;
  server: ServerKind;
  /** 'project': the Node running the benchmark (jobd's); 'peers': the Node 22 that bench/peers installs. */
  node: 'project' | 'peers';
  /** A jobd row: the ratios are jobd's median jobs/s over each other system's. */
  jobd?: boolean;
  /** Reference rows are printed and ratioed like the others; the flag says they are not a target. */
  reference?: boolean;
  options(shape: RunShape, env: NodeJS.ProcessEnv): Record<string, unknown>;
}

function intEnv(env: NodeJS.ProcessEnv, name: string, dflt: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`${name} = '${raw}' is not allowed: must be an integer >= 1`);
  return n;
}

export const SYSTEMS: readonly PeerSystem[] = [
  {
    name: 'jobd-pooled',
    label: 'jobd, pooled children, embedded server (bin/jobd-embedded, in memory)',
    runner: 'jobd.mjs',
    server: 'embedded',
    node: 'project',
    jobd: true,
    options: () => ({ mode: 'pooled' }),
  },
  {
    // Against the in-process peers (pg-boss, graphile-worker, BullMQ in-process): no child processes.
    name: 'jobd-inline',
    label: 'jobd, inline handlers in the daemon, embedded server (bin/jobd-embedded, in memory)',
    runner: 'jobd.mjs',
    server: 'embedded',
    node: 'project',
    jobd: true,
    options: () => ({ mode: 'inline' }),
  },
  {
    name: 'bullmq-sandboxed',
    label: 'BullMQ, sandboxed processors (child processes), Redis',
    runner: 'bullmq.mjs',
    server: 'redis',
    node: 'project',
    options: () => ({ sandboxed: true }),
  },
  {
    name: 'bullmq-inprocess',
    label: 'BullMQ, in-process handlers, Redis',
    runner: 'bullmq.mjs',
    server: 'redis',
    node: 'project',
    reference: true,
    options: () => ({ sandboxed: false }),
  },
  {
    name: 'pgboss-inprocess',
    label: 'pg-boss, in-process batch handlers, PostgreSQL',
    runner: 'pgBoss.mjs',
    server: 'postgresql',
    node: 'peers',
    options: ({ concurrency }, env) => {
      const batchSize = intEnv(env, 'PEERS_PGBOSS_BATCH', 50);
      // One poller per `batchSize` slots: at most max(concurrency, batchSize) jobs in hand at once.
      const localConcurrency = intEnv(
        env,
        'PEERS_PGBOSS_LOCAL_CONCURRENCY',
        Math.max(1, Math.floor(concurrency / batchSize)),
      );
      return { batchSize, localConcurrency };
    },
  },
  {
    name: 'graphile-inprocess',
    label: 'graphile-worker, in-process tasks, PostgreSQL',
    runner: 'graphileWorker.mjs',
    server: 'postgresql',
    node: 'peers',
    reference: true,
    options: ({ concurrency }) => ({ maxPoolSize: concurrency }),
  },
];
