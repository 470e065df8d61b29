/**
 * A fault while serving a command (an exception that is no refusal: a bug, a RangeError) never ends the
 * server and never leaves half a command behind. The command gets InternalError (code 1) and a log
 * line naming it; its effects are taken back, in memory, in the change history and on disk; a
 * statement of a batch that faults is taken back alone and the batch reports it as a write error.
 *
 * Faults cannot be provoked through the wire on purpose (each one found is fixed), so this test runs
 * the dispatcher in this process over an engine that faults right after a chosen write has been made.
 */
import { describe, expect, it } from 'vitest';
import type { Document } from 'bson';
import { executeCommand } from '../../src/embedded/commands.js';
import { CursorManager } from '../../src/embedded/cursor.js';
import { Engine, type WriteOptions } from '../../src/embedded/engine.js';
import type { Collection } from '../../src/embedded/collection.js';
import { openDurableStore } from '../../src/embedded/persistence.js';
import type { DurableStore } from '../../src/embedded/persistenceTypes.js';
import { useTempDirs } from '../fixtures/embedded/tempDir.js';

const tempDir = useTempDirs('faults');

/** An engine that throws a TypeError just after storing a document whose _id is 'fault'. */
class FaultingEngine extends Engine {
  override insert(coll: Collection, doc: Document, opts?: WriteOptions): void {
    super.insert(coll, doc, opts);
    if (doc._id === 'fault') throw new TypeError('injected fault after an insert');
  }

  override replace(
    coll: Collection,
    before: Document,
    after: Document,
    replacement: boolean,
    opts?: WriteOptions,
  ): void {
    super.replace(coll, before, after, replacement, opts);
    if (after.fault === true) throw new TypeError('injected fault after a replace');
  }
}

function setup(store?: DurableStore): {
  engine: Engine;
  lines: string[];
  run: (cmd: Document) => Promise<Document>;
  close: () => void;
} {
  const lines: string[] = [];
  const engine = new FaultingEngine(store, (m) => lines.push(m));
  if (store) {
    const loaded = store.load();
    engine.restore(loaded.snapshot, loaded.records);
  }
  const cursors = new CursorManager();
  const ctx = {
    engine,
    cursors,
    server: { host: '127.0.0.1', port: 0, startedAt: new Date() },
    connectionId: 7,
    log: (m: string) => lines.push(m),
  };
  return {
    engine,
    lines,
    run: async (cmd) => (await executeCommand({ ...cmd, $db: 'app' }, ctx)).reply,
    close: () => {
      cursors.closeAll();
      store?.close();
    },
  };
}

const docs = (engine: Engine, coll = 'c'): Document[] => [
  ...(engine.getCollection('app', coll)?.docs.values() ?? []),
];

describe('a fault while serving a command', () => {
  it('takes back the faulting statement of an ordered batch alone and reports it as InternalError at its index', async () => {
    const { engine, lines, run, close } = setup();
    try {
      await run({ insert: 'c', documents: [{ _id: 0 }] });
      const head = engine.changes.head;
      const reply = await run({ insert: 'c', documents: [{ _id: 1 }, { _id: 'fault' }, { _id: 3 }] });
      expect(reply).toMatchObject({ ok: 1, n: 1 });
      expect(reply.writeErrors).toEqual([
        expect.objectContaining({ index: 1, code: 1, codeName: 'InternalError' }),
      ]);
      expect(docs(engine)).toEqual([{ _id: 0 }, { _id: 1 }]);
      // Only the kept insert is in the change history.
      expect([...engine.changes.after(head)].map((e) => e.documentKey?._id)).toEqual([1]);
      expect(lines.join('\n')).toMatch(
        /statement 1 of command 'insert' on connection 7 failed with an internal error/,
      );
      // The server goes on: the next command runs normally.
      expect(await run({ insert: 'c', documents: [{ _id: 4 }] })).toMatchObject({ ok: 1, n: 1 });
    } finally {
      close();
    }
  });

  it('answers a command that faults after writing with InternalError, logs its name and undoes it', async () => {
    const { engine, lines, run, close } = setup();
    try {
      await run({ insert: 'c', documents: [{ _id: 1, v: 'kept' }] });
      const head = engine.changes.head;
      const reply = await run({
        findAndModify: 'c',
        query: { _id: 1 },
        update: { $set: { v: 'changed', fault: true } },
      });
      expect(reply).toMatchObject({ ok: 0, code: 1, codeName: 'InternalError' });
      expect(docs(engine)).toEqual([{ _id: 1, v: 'kept' }]);
      expect([...engine.changes.after(head)]).toEqual([]);
      expect(lines.join('\n')).toMatch(
        /command 'findAndModify' on connection 7 failed with an internal error; its effects were undone/,
      );
    } finally {
      close();
    }
  });

  it('leaves the target of a $out untouched when writing it faults', async () => {
    const { engine, run, close } = setup();
    try {
      await run({ insert: 'src', documents: [{ _id: 'a' }, { _id: 'fault' }] });
      await run({ insert: 'out', documents: [{ _id: 'old' }] });
      expect(docs(engine, 'src')).toHaveLength(1); // the faulting insert was taken back
      await run({ insert: 'src', documents: [{ _id: 'b', fault: true }] });
      const reply = await run({
        aggregate: 'src',
        pipeline: [
          { $project: { _id: { $cond: [{ $eq: ['$_id', 'b'] }, 'fault', '$_id'] } } },
          { $out: 'out' },
        ],
        cursor: {},
      });
      expect(reply).toMatchObject({ ok: 0, code: 1 });
      expect(docs(engine, 'out')).toEqual([{ _id: 'old' }]);
    } finally {
      close();
    }
  });

  it('writes nothing of an undone command to the data directory', async () => {
    const dir = tempDir();
    const first = setup(openDurableStore(dir));
    try {
      await first.run({ insert: 'c', documents: [{ _id: 1 }, { _id: 'fault' }, { _id: 3 }] });
      await first.run({ insert: 'c', documents: [{ _id: 2, v: 'kept' }] });
      await first.run({ findAndModify: 'c', query: { _id: 2 }, update: { $set: { fault: true } } });
    } finally {
      first.close();
    }
    const again = setup(openDurableStore(dir));
    try {
      expect(docs(again.engine)).toEqual([{ _id: 1 }, { _id: 2, v: 'kept' }]);
    } finally {
      again.close();
    }
  });
});
