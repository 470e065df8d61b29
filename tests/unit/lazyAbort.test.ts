/** LazyAbort: an execution's abort whose AbortSignal is made only when asked for. */
import { describe, expect, it } from 'vitest';
import { LazyAbort } from '../../src/sandbox/lazyAbort.cjs';

describe('LazyAbort', () => {
  it('a signal asked for after the abort is born aborted, with the same reason', () => {
    const a = new LazyAbort();
    expect(a.aborted).toBe(false);
    const why = new Error('lease lost');
    a.abort(why);
    expect(a.aborted).toBe(true);
    expect(a.reason).toBe(why);
    expect(a.signal.aborted).toBe(true);
    expect(a.signal.reason).toBe(why);
  });

  it("calls jobd's listeners first, then the signal's, once; the first abort wins", () => {
    const a = new LazyAbort();
    const order: string[] = [];
    a.onAbort(() => order.push(`jobd:${String((a.reason as Error).message)}`));
    const off = a.onAbort(() => order.push('removed'));
    off();
    a.signal.addEventListener('abort', () => order.push(`handler:${a.signal.aborted}`));
    a.abort(new Error('timeout'));
    a.abort(new Error('shutdown'));
    expect(order).toEqual(['jobd:timeout', 'handler:true']);
    expect((a.signal.reason as Error).message).toBe('timeout');
  });
});
