/**
 * One-at-a-time sections per key, in arrival order (a section that fails does
 * not hold up the next). In-process only: one runner owns its sessions (the
 * store's constraints back it up). Used per session by the session service,
 * the sandbox driver and the gateway's sockets.
 */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const tail = new Promise<void>((resolve) => { release = resolve; });
    const chained = previous.then(() => tail);
    this.tails.set(key, chained);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === chained) this.tails.delete(key);
    }
  }

  /** Keys with a section running or waiting (for tests and metrics). */
  size(): number {
    return this.tails.size;
  }
}
