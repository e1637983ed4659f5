/**
 * The one place where secrets are taken out of text before it leaves the
 * process: log lines, stored events (and so every stream frame), and error
 * messages. Secrets are registered by value (the model credential, API keys,
 * agent tokens, each task's env values) and replaced wherever they occur.
 */

export const REDACTED = '[REDACTED]';
/** Shorter values would mangle ordinary text ("1", "yes") without hiding anything worth hiding. */
const MIN_SECRET_LENGTH = 6;
/** Task env values are remembered for later output too; bounded so memory stays flat. */
const MAX_TRANSIENT = 50_000;

export class Redactor {
  private readonly permanent = new Set<string>();
  private readonly transient = new Set<string>();
  private pattern: RegExp | null = null;

  /** Secrets of the process itself (credentials, API keys): kept for its whole life. */
  addPermanent(...values: Array<string | undefined>): void {
    for (const value of values) if (value && value.length >= MIN_SECRET_LENGTH) this.permanent.add(value);
    this.pattern = null;
  }

  /** Per-task secrets (env values, tokens); the oldest are forgotten past a bound. */
  add(...values: Array<string | undefined>): void {
    for (const value of values) {
      if (!value || value.length < MIN_SECRET_LENGTH || this.permanent.has(value)) continue;
      this.transient.delete(value);
      this.transient.add(value);
      if (this.transient.size > MAX_TRANSIENT) this.transient.delete(this.transient.values().next().value!);
    }
    this.pattern = null;
  }

  redact(text: string): string {
    const pattern = this.compile();
    return pattern ? text.replace(pattern, REDACTED) : text;
  }

  /** Redacts every string inside a JSON-like value; returns a new value, never mutates. */
  redactDeep<T>(value: T): T {
    if (!this.compile()) return value;
    return this.walk(value) as T;
  }

  private walk(value: unknown): unknown {
    if (typeof value === 'string') return this.redact(value);
    if (Array.isArray(value)) return value.map((item) => this.walk(item));
    if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
      const out: Record<string, unknown> = {};
      for (const [key, item] of Object.entries(value)) out[this.redact(key)] = this.walk(item);
      return out;
    }
    return value;
  }

  private compile(): RegExp | null {
    if (this.pattern) return this.pattern;
    const all = [...this.permanent, ...this.transient];
    if (all.length === 0) return null;
    // Longest first, so a secret that contains another is replaced whole.
    all.sort((a, b) => b.length - a.length);
    this.pattern = new RegExp(all.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g');
    return this.pattern;
  }
}
