/**
 * Server errors carry MongoDB's numeric code and codeName. Messages are not asserted: MongoDB does not
 * document their wording.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openTestDb, type TestDb } from '../helpers/db.js';
import { serverError } from '../helpers/serverError.js';

let t: TestDb;

beforeEach(async () => {
  t = await openTestDb('conf_err');
});

afterEach(async () => {
  await t.close();
});

describe('error codes', () => {
  it('renameCollection of a missing collection fails with NamespaceNotFound 26', async () => {
    const err = await serverError(t.db.collection('missing').rename('elsewhere'));
    expect(err.code).toBe(26);
    expect(err.codeName).toBe('NamespaceNotFound');
  });

  it('renameCollection onto an existing collection fails with NamespaceExists 48 unless dropTarget', async () => {
    await t.db.collection('a').insertOne({ x: 1 });
    await t.db.collection('b').insertOne({ y: 1 });
    const err = await serverError(t.db.collection('a').rename('b'));
    expect(err.code).toBe(48);
    expect(err.codeName).toBe('NamespaceExists');
    await t.db.collection('a').rename('b', { dropTarget: true });
    expect(
      await t.db
        .collection('b')
        .find({}, { projection: { _id: 0 } })
        .toArray(),
    ).toEqual([{ x: 1 }]);
  });

  it('an unknown command fails with CommandNotFound 59', async () => {
    const err = await serverError(t.db.command({ noSuchCommand: 1 }));
    expect(err.code).toBe(59);
    expect(err.codeName).toBe('CommandNotFound');
  });

  it('an unknown query operator fails with BadValue 2', async () => {
    await t.db.collection('c').insertOne({ a: 1 });
    const err = await serverError(
      t.db
        .collection('c')
        .find({ a: { $noSuchOperator: 1 } })
        .toArray(),
    );
    expect(err.code).toBe(2);
    expect(err.codeName).toBe('BadValue');
  });

  it('an unknown update operator fails with FailedToParse 9', async () => {
    await t.db.collection('c').insertOne({ _id: 1, a: 1 } as never);
    const err = await serverError(
      t.db.collection('c').updateOne({ _id: 1 } as never, { $noSuchModifier: { a: 1 } } as never),
    );
    expect(err.code).toBe(9);
    expect(err.codeName).toBe('FailedToParse');
  });

  it('creating a collection that exists fails with NamespaceExists 48', async () => {
    await t.db.createCollection('dup');
    const err = await serverError(t.db.command({ create: 'dup' }));
    expect(err.code).toBe(48);
  });
});
