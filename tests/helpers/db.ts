/**
 * Gives a test its own database on the backend chosen in globalSetup. Tests never mock the driver.
 *
 *   const t = await openTestDb('claims');
 *   ... t.db.collection('jobs') ...
 *   await t.close();             // drops the database unless the test failed and JOBD_KEEP_TEST_DB=1
 */
import { inject } from 'vitest';
import { MongoClient, type Db } from 'mongodb';
import { randomBytes } from 'node:crypto';

export interface TestDb {
  uri: string;
  dbName: string;
  backend: 'external' | 'mongod' | 'embedded';
  client: MongoClient;
  db: Db;
  close(options?: { drop?: boolean }): Promise<void>;
}

let counter = 0;

export function testDbName(label = 'test'): string {
  const safe = label.replace(/[^A-Za-z0-9_]/g, '_').slice(0, 24);
  return `jobd_${safe}_${process.pid}_${++counter}_${randomBytes(3).toString('hex')}`;
}

export function testMongoUri(): string {
  return inject('mongoUri');
}

export function testBackend(): 'external' | 'mongod' | 'embedded' {
  return inject('backend');
}

export async function openTestDb(label?: string): Promise<TestDb> {
  const uri = testMongoUri();
  const dbName = testDbName(label);
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 10_000 });
  await client.connect();
  const db = client.db(dbName);
  return {
    uri,
    dbName,
    backend: testBackend(),
    client,
    db,
    async close(options = {}) {
      const keep = options.drop === false || process.env.JOBD_KEEP_TEST_DB === '1';
      try {
        if (!keep) await db.dropDatabase();
      } finally {
        await client.close();
      }
    },
  };
}
