/**
 * Timing of the store calls a task's path makes (store_write, store_read:
 * src/metrics/hot-path.ts), for every dialect. A dialect may put its own step
 * around each call (SQLite: wait for the WAL's fsync; PostgreSQL: count the
 * calls in flight); the time measured includes it.
 */
import type { Store } from '../core/ports/store.ts';
import { hotPath, type HotPhase } from '../metrics/hot-path.ts';

/** The store's writes and reads that a task's path makes. */
const TIMED: ReadonlyArray<[keyof Store, HotPhase]> = [
  ['enqueueTask', 'store_write'], ['claimTasks', 'store_write'], ['recordTaskSpend', 'store_write'], ['recordTaskTool', 'store_write'],
  ['setPendingInput', 'store_write'], ['finishTask', 'store_write'], ['appendEvents', 'store_write'], ['createSession', 'store_write'],
  ['findSession', 'store_read'], ['getSessionByKey', 'store_read'], ['getTask', 'store_read'], ['queuePosition', 'store_read'],
  ['readEvents', 'store_read'], ['eventBounds', 'store_read'], ['oldestUnfinishedTask', 'store_read'],
];

const TIMED_PHASE: ReadonlyMap<string, HotPhase> = new Map(TIMED);

/** Runs one store call; resolves with its result once whatever the dialect adds to it is done. */
export type AroundCall = <R>(call: () => Promise<R>) => Promise<R>;

const direct: AroundCall = (call) => call();

/**
 * Wraps every method of `target` but close: each runs through `around`, and
 * those of a task's path are timed. Changes `target` in place and returns it.
 */
export function timedStore<T extends object>(target: T, around: AroundCall = direct): T {
  const methods = target as unknown as Record<string, unknown>;
  for (const [name, method] of Object.entries(methods)) {
    if (typeof method !== 'function' || name === 'close') continue;
    const phase = TIMED_PHASE.get(name);
    const call = method as (...args: unknown[]) => Promise<unknown>;
    methods[name] = async (...args: unknown[]) => {
      const startedAt = performance.now();
      const result = await around(() => call(...args));
      if (phase) hotPath.since(phase, startedAt);
      return result;
    };
  }
  return target;
}
