/**
 * Runs async critical sections one at a time per key, in arrival order; a failed section does not block the next.
 * Precondition for every use: a section does not take its own key again (no re-entry: it would wait for itself).
 */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** Runs fn once every earlier holder of `key` finished; resolves or rejects as fn does. */
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    try {
      return await next;
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }

  /** Keys with a section running or waiting (empty when idle: keys do not accumulate). */
  get busyKeys(): number {
    return this.tails.size;
  }
}
