/**
 * An execution's abort, with its AbortSignal made only when someone asks for it. Many handlers never
 * read ctx.signal: in the daemon (inline jobs) an AbortController per job was a measurable part of its
 * CPU, and in an isolated child the first one loads Node's abort_controller module (~0.45 CPU-ms of its
 * start). jobd's own code listens with onAbort(), which needs no signal; a signal asked for after the
 * abort is born aborted, with the same reason. CommonJS, so the child entry bundles it
 * (scripts/bundleChild.mjs) and the daemon imports the same class.
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
