import { expect } from 'vitest';

/** Element-wise equality of large arrays without building a deep-equality diff of the whole thing. */
export function expectSameValues(got: ArrayLike<number>, want: ArrayLike<number>, what = 'array'): void {
  expect(got.length, `${what} length`).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i]) expect(got[i], `${what}[${i}]`).toBe(want[i]);
  }
}
