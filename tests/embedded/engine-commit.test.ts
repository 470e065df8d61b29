/**
 * The engine's commit path on a real data directory, in this process: a compaction made due by a
 * command runs after that command's reply, and close() finishes requests, compacts and unlocks.
 */
import { describe, expect, it } from 'vitest';
import { Long, MongoClient } from 'mongodb';
import { runCommand } from '../../src/embedded/commands.js';
import { CursorManager } from '../../src/embedded/cursor.js';
import { Engine } from '../../src/embedded/engine.js';
import { startEmbeddedServer } from '../../src/embedded/index.js';
import { openDurableStore } from '../../src/embedded/persistence.js';
import { useTempDirs } from '../fixtures/embedded/tempDir.js';

const tempDir = useTempDirs('commit');

describe('engine commit path', () => {
  it('a compaction made due by a command runs after the command has its reply, not inside it', async () => {
    const store = openDurableStore(tempDir(), { compactMinBytes: 1024 });
    const lines: string[] = [];
    const engine = new Engine(store, (m) => lines.push(m));
    const cursors = new CursorManager();
    try {
      const loaded = store.load();
      engine.restore(loaded.snapshot, loaded.records);
      const ctx = {
        engine,
        cursors,
        server: { host: '127.0.0.1', port: 0, startedAt: new Date() },
        connectionId: 1,
      };

      const reply = await runCommand(
        { insert: 'docs', documents: [{ _id: 1, pad: 'x'.repeat(4096) }], $db: 'app' },
        ctx,
      );
      expect(reply).toMatchObject({ ok: 1, n: 1 });
      expect(store.shouldCompact()).toBe(true);
      expect(store.generation).toBe(0); // the reply exists; the compaction has not run yet

      await new Promise<void>((resolve) => setImmediate(resolve));
      expect(store.generation).toBe(1);
      expect(store.shouldCompact()).toBe(false);
      expect(lines.join('\n')).toMatch(/compacted .* in [\d.]+ ms/);
    } finally {
      cursors.closeAll();
      store.close();
    }
  });

  it('close() answers a getMore already waiting for a change event, compacts the data directory and releases its lock', async () => {
    const dir = tempDir();
    const server = await startEmbeddedServer({ dataDir: dir });
    const waiter = new MongoClient(server.uri, { serverSelectionTimeoutMS: 5_000 });
    const prober = new MongoClient(server.uri, { serverSelectionTimeoutMS: 5_000 });
    try {
      await waiter.connect();
      await prober.connect();
      const app = waiter.db('app');
      await app.collection<{ _id: number }>('jobs').insertMany([{ _id: 1 }, { _id: 2 }]);
      const opened = await app.command({ aggregate: 'jobs', pipeline: [{ $changeStream: {} }], cursor: {} });
      const cursorId = (opened.cursor as { id: Long }).id;
      // A getMore that would wait a minute for an event.
      const waiting = app.command({ getMore: cursorId, collection: 'jobs', maxTimeMS: 60_000 });
      // It is in flight at the server once the cursor is busy for everyone else.
      for (;;) {
        const probe = await prober
          .db('app')
          .command({ getMore: cursorId, collection: 'jobs', maxTimeMS: 1 })
          .catch((e: unknown) => e);
        if (probe instanceof Error && /already in use/.test(probe.message)) break;
      }
      await server.close();
      // Answered, not cut off: with InterruptedAtShutdown, as mongod answers, which the driver
      // takes as resumable (a final batch would end the client's change stream instead).
      const answer = await waiting.catch((e: unknown) => e);
      expect(answer).toMatchObject({ code: 11600, codeName: 'InterruptedAtShutdown' });
    } finally {
      await waiter.close(true);
      await prober.close(true);
    }

    // The lock is free and everything is in one snapshot with an empty log.
    const store = openDurableStore(dir);
    try {
      const state = store.load();
      expect(state.generation).toBe(1);
      expect(state.records).toEqual([]);
      expect(state.snapshot.find((c) => c.coll === 'jobs')?.docs).toEqual([{ _id: 1 }, { _id: 2 }]);
    } finally {
      store.close();
    }
  });
});
