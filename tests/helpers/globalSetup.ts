/**
 * Chooses the database every test talks to, once per run:
 *   MONGODB_URI            an external, real MongoDB (nothing is started)
 *   MONGOMS_SYSTEM_BINARY  a real mongod started by mongodb-memory-server as a one-member replica set
 *   otherwise              jobd's embedded MongoDB-compatible server, in memory
 * Nothing is downloaded: mongodb-memory-server is only used with a system binary.
 */
import type { TestProject } from 'vitest/node';
import { redactUri } from './redact.js';

export type Backend = 'external' | 'mongod' | 'embedded';

declare module 'vitest' {
  export interface ProvidedContext {
    mongoUri: string;
    backend: Backend;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let uri: string;
  let backend: Backend;
  let stop: () => Promise<void> = async () => {};

  if (process.env.MONGODB_URI) {
    uri = process.env.MONGODB_URI;
    backend = 'external';
  } else if (process.env.MONGOMS_SYSTEM_BINARY) {
    const { MongoMemoryReplSet } = await import('mongodb-memory-server-core');
    const rs = await MongoMemoryReplSet.create({
      replSet: { count: 1, storageEngine: 'wiredTiger' },
      binary: { systemBinary: process.env.MONGOMS_SYSTEM_BINARY },
    });
    uri = rs.getUri();
    backend = 'mongod';
    stop = async () => {
      await rs.stop();
    };
  } else {
    const { startEmbeddedServer } = await import('../../src/embedded/index.js');
    // Sweep TTL indexes every second so TTL tests finish quickly; MongoDB documents its own monitor as every 60 s.
    const server = await startEmbeddedServer({ port: 0, ttlIntervalMs: 1000 });
    uri = server.uri;
    backend = 'embedded';
    stop = () => server.close();
  }

  console.log(`[jobd tests] database backend: ${backend} (${redactUri(uri)})`);
  project.provide('mongoUri', uri);
  project.provide('backend', backend);
  return stop;
}
