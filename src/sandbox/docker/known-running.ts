/**
 * The sandboxes this driver has seen running, with the spec and image each
 * runs, kept true by the engine's `die` events. A warm session's ensure()
 * then asks the engine only for the image's id (a rebuilt image still
 * recreates the container), instead of inspecting the container, preparing
 * its folders and listing every sandbox for the cap: three engine round
 * trips and a few file system calls off every task's start.
 *
 * A sandbox is trusted only once it was seen running after its `die` events
 * were being watched (a death before the watch began cannot be missed), and
 * only while the engine's event stream has stayed open since then (a death
 * while it was closed would be heard late). Anything else is looked up again.
 * The runner never pauses a sandbox; one paused by hand (`docker pause`) stays
 * trusted, and its task waits until it is unpaused or times out.
 *
 * Owns: what the driver may assume of a running sandbox. Must not touch:
 * containers (the driver acts; this only remembers).
 */
import type { EngineEvents } from './engine-events.ts';

interface Known {
  id: string;
  specHash: string;
  imageId: string;
  /** When its `die` events began to be watched (performance.now()). */
  watchedFrom: number;
  /** When it was last seen running while watched; null until then. */
  seenAt: number | null;
  unsubscribe(): void;
}

export class KnownRunning {
  readonly #events: EngineEvents;
  readonly #known = new Map<string, Known>();

  constructor(events: EngineEvents) {
    this.#events = events;
  }

  /**
   * The session's sandbox ran `id` with this spec and image, as a look that
   * began at `lookedAt` (performance.now()) showed; null when it was just
   * started (not looked at since the start).
   */
  saw(sessionKey: string, id: string, specHash: string, imageId: string, lookedAt: number | null): void {
    let known = this.#known.get(sessionKey);
    if (known?.id !== id) {
      this.forget(sessionKey);
      const unsubscribe = this.#events.subscribe(id, (event) => {
        if (event.action === 'die' && this.#known.get(sessionKey)?.id === id) this.forget(sessionKey);
      });
      known = { id, specHash, imageId, watchedFrom: performance.now(), seenAt: null, unsubscribe };
      this.#known.set(sessionKey, known);
    }
    known.specHash = specHash;
    known.imageId = imageId;
    if (lookedAt !== null && lookedAt >= known.watchedFrom) known.seenAt = lookedAt;
  }

  /** The sandbox the session runs, when nothing can have stopped or changed it since it was seen. */
  trusted(sessionKey: string, specHash: string): { id: string; imageId: string } | undefined {
    const known = this.#running(sessionKey);
    return known?.specHash === specHash ? { id: known.id, imageId: known.imageId } : undefined;
  }

  /** True when the session's sandbox is trusted to run (whatever its spec). */
  runs(sessionKey: string): boolean {
    return this.#running(sessionKey) !== undefined;
  }

  /** Its entry, when it was seen running while watched and no death can have gone unheard since. */
  #running(sessionKey: string): Known | undefined {
    const known = this.#known.get(sessionKey);
    return known && known.seenAt !== null && this.#events.openSince(known.seenAt) ? known : undefined;
  }

  /** Before the driver stops, removes or restarts it. */
  forget(sessionKey: string): void {
    const known = this.#known.get(sessionKey);
    if (!known) return;
    this.#known.delete(sessionKey);
    known.unsubscribe();
  }

  clear(): void {
    for (const sessionKey of [...this.#known.keys()]) this.forget(sessionKey);
  }
}
