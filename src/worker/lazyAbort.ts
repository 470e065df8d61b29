/**
 * An execution's abort, with its AbortSignal made only when someone asks for it. Making an
 * AbortController costs microseconds, and a trivial inline handler never reads ctx.signal: per job
 * that was a measurable part of the daemon's CPU. jobd's own code listens with onAbort(), which needs
 * no signal; a signal asked for after the abort is born aborted, with the same reason.
 */
export class LazyAbort {
  private controller: AbortController | undefined;
  private listeners: (() => void)[] | undefined;
  private abortedWith: { reason: unknown } | undefined;

  get aborted(): boolean {
    return this.abortedWith !== undefined;
  }

  /** The abort's reason (undefined before the abort). */
  get reason(): unknown {
    return this.abortedWith?.reason;
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.abortedWith) this.controller.abort(this.abortedWith.reason);
    }
    return this.controller.signal;
  }

  /**
   * Calls `fn` once, at the abort, before the signal's own listeners (those of the handler, which
   * came later). Returns the function that removes it.
   */
  onAbort(fn: () => void): () => void {
    (this.listeners ??= []).push(fn);
    return () => {
      const i = this.listeners?.indexOf(fn) ?? -1;
      if (i >= 0) this.listeners!.splice(i, 1);
    };
  }

  /** The first abort wins, as AbortController's does; later calls change nothing. */
  abort(reason: unknown): void {
    if (this.abortedWith) return;
    this.abortedWith = { reason };
    const listeners = this.listeners;
    this.listeners = undefined;
    if (listeners) for (const fn of listeners) fn();
    this.controller?.abort(reason);
  }
}
