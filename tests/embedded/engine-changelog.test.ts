/**
 * updateDescription as the change log computes it, without a server: the rule MongoDB documents for
 * disambiguatedPaths (a field name that looks like an array index below the top level, or that contains
 * a dot, makes the path ambiguous from there on; array indexes are listed as numbers), and arrays diffed
 * element by element.
 */
import { describe, expect, it } from 'vitest';
import { describeUpdate } from '../../src/embedded/changeLog.js';

describe('describeUpdate', () => {
  it('reports no disambiguatedPaths unless asked (showExpandedEvents)', () => {
    expect(describeUpdate({ a: { '1': 1 } }, { a: { '1': 2 } })).toEqual({
      updatedFields: { 'a.1': 2 },
      removedFields: [],
      truncatedArrays: [],
    });
  });

  it('lists the steps of ambiguous paths: numeric names below the top level, dotted names anywhere', () => {
    const d = describeUpdate(
      { _id: 1, '7': 1, a: { '1': { b: 1 } }, 'x.y': 1, c: { 'p.q': [1, 2, 3] }, gone: { '2': 1 } },
      { _id: 1, '7': 2, a: { '1': { b: 2 } }, 'x.y': 2, c: { 'p.q': [1, 5] }, gone: {} },
      true,
    );
    expect(d.updatedFields).toEqual({ '7': 2, 'a.1.b': 2, 'x.y': 2, 'c.p.q.1': 5 });
    expect(d.removedFields).toEqual(['gone.2']);
    expect(d.truncatedArrays).toEqual([{ field: 'c.p.q', newSize: 2 }]);
    expect(d.disambiguatedPaths).toEqual({
      'a.1.b': ['a', '1', 'b'],
      'x.y': ['x.y'],
      'c.p.q.1': ['c', 'p.q', 1],
      'c.p.q': ['c', 'p.q'],
      'gone.2': ['gone', '2'],
    });
  });

  it('an array index alone is not ambiguous; a name with a leading zero is not an index', () => {
    const d = describeUpdate({ a: [{ b: 1 }], c: { '01': 1 } }, { a: [{ b: 2 }], c: { '01': 2 } }, true);
    expect(d.updatedFields).toEqual({ 'a.0.b': 2, 'c.01': 2 });
    expect(d.disambiguatedPaths).toEqual({});
  });

  it('diffs arrays element by element: changed elements, appended ones, and a new size when shorter', () => {
    expect(describeUpdate({ a: [1, { x: 1 }, 3] }, { a: [9, { x: 2 }, 3, 4] })).toEqual({
      updatedFields: { 'a.0': 9, 'a.1.x': 2, 'a.3': 4 },
      removedFields: [],
      truncatedArrays: [],
    });
    expect(describeUpdate({ a: ['foo', { a: 'bar' }, 1, 2, 3] }, { a: ['foo', { a: 'bar' }] })).toEqual({
      updatedFields: {},
      removedFields: [],
      truncatedArrays: [{ field: 'a', newSize: 2 }],
    });
  });
});
