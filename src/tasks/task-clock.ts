/**
 * A task's time limit, paused while the task waits for a person (a person's
 * time is not the agent's: that wait has INPUT_TIMEOUT_MS of its own).
 */
import type { PausableClock } from './human-inputs.ts';

export class TaskClock implements PausableClock {
  private remainingMs: number;
  private since = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly onExpire: () => void;

  constructor(limitMs: number, onExpire: () => void) {
    this.remainingMs = limitMs;
    this.onExpire = onExpire;
    this.resume();
  }

  pause(): void {
    if (!this.timer) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.remainingMs -= Date.now() - this.since;
  }

  resume(): void {
    if (this.timer || this.stopped) return;
    this.since = Date.now();
    this.timer = setTimeout(this.onExpire, Math.max(0, this.remainingMs));
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
