/**
 * The one place where secrets are taken out of text before it leaves the
 * process: log lines, stored events (and so every stream frame), task records
 * and error messages. Secrets are registered by value (the model credential,
 * API keys, task tokens, each task's env values) and replaced wherever they
 * occur.
 *
 * A task's secrets belong to its session (their scope): what a session's
 * events and records show is redacted with the process's secrets and that
 * session's, never another's (else an agent could test a guess against
 * another tenant's secrets by echoing it). Log lines are redacted with all.
 *
 * Beside it: secret-index.ts (the radix tree and the one-pass replacement),
 * stream-redactor.ts (text that arrives in pieces).
 *
 * Owns (with sealer.ts): secrets at rest and on the way out; here, which
 * secrets are known, to which scope, and for how long. Must not touch: where
 * secrets come from (config, tasks, the gateway register them).
 */
import { MIN_SECRET_LENGTH, SecretIndex, redactWith } from './secret-index.ts';

export { REDACTED } from './secret-index.ts';

/** Task secrets are remembered for later output too; bounded so memory stays flat... */
const MAX_TRANSIENT = 50_000;
const MAX_TRANSIENT_CHARS = 64 * 1024 * 1024;
/** ...and per session, so one session pushes out only its own old secrets. */
const MAX_PER_SCOPE = 1_000;
const MAX_PER_SCOPE_CHARS = 4 * 1024 * 1024;

export class Redactor {
  private readonly permanent = new SecretIndex();
  private readonly permanentValues = new Set<string>();
  /** Every secret: the log's view. */
  private readonly all = new SecretIndex();
  private readonly scopes = new Map<string, SecretIndex>();
  /** (scope, value) pairs, oldest first, to bound memory; and how many scopes hold each value. */
  private readonly recent = new Map<string, { scope: string; value: string }>();
  /** Pairs a running task holds: never forgotten while held, however many others arrive. */
  private readonly held = new Map<string, number>();
  /** Each scope's pairs, oldest first, and their total length. */
  private readonly byScope = new Map<string, { keys: Set<string>; chars: number }>();
  private readonly holders = new Map<string, number>();
  private transientChars = 0;

  /** Secrets of the process itself (credentials, API keys): kept for its whole life, redacted everywhere. */
  addPermanent(...values: Array<string | undefined>): void {
    for (const value of values) {
      if (!value || value.length < MIN_SECRET_LENGTH) continue;
      this.permanentValues.add(value);
      this.permanent.add(value);
      this.all.add(value);
    }
  }

  /** Secrets of one session (a task's env values, its token); the oldest are forgotten past a bound. */
  add(scope: string, ...values: Array<string | undefined>): void {
    this.register(scope, values);
    this.evict(scope);
  }

  /**
   * Like add, for a running task: the values cannot be forgotten until the
   * returned release is called (else another tenant could push them out by
   * flooding the redactor with its own). Released values age like the others.
   */
  hold(scope: string, ...values: Array<string | undefined>): () => void {
    const keys = this.register(scope, values);
    for (const key of keys) this.held.set(key, (this.held.get(key) ?? 0) + 1);
    this.evict(scope);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const key of keys) {
        const left = (this.held.get(key) ?? 1) - 1;
        if (left > 0) this.held.set(key, left);
        else this.held.delete(key);
      }
      this.evict(scope);
    };
  }

  /** Registers (or refreshes) the values; returns their keys. */
  private register(scope: string, values: Array<string | undefined>): string[] {
    const keys: string[] = [];
    for (const value of values) {
      if (!value || value.length < MIN_SECRET_LENGTH || this.permanentValues.has(value)) continue;
      const key = `${scope}\u0000${value}`;
      keys.push(key);
      if (this.recent.delete(key)) {
        this.recent.set(key, { scope, value });
        const own = this.byScope.get(scope)!;
        own.keys.delete(key);
        own.keys.add(key);
        continue;
      }
      this.recent.set(key, { scope, value });
      let own = this.byScope.get(scope);
      if (!own) this.byScope.set(scope, (own = { keys: new Set(), chars: 0 }));
      own.keys.add(key);
      own.chars += value.length;
      let index = this.scopes.get(scope);
      if (!index) this.scopes.set(scope, (index = new SecretIndex()));
      index.add(value);
      this.all.add(value);
      this.holders.set(value, (this.holders.get(value) ?? 0) + 1);
      this.transientChars += value.length;
    }
    return keys;
  }

  /** Forgets the oldest pairs no running task holds: the scope's own past its bounds, then anyone's past the global ones. */
  private evict(scope: string): void {
    const own = this.byScope.get(scope);
    if (own && (own.keys.size > MAX_PER_SCOPE || own.chars > MAX_PER_SCOPE_CHARS)) {
      for (const key of own.keys) {
        if (own.keys.size <= MAX_PER_SCOPE && own.chars <= MAX_PER_SCOPE_CHARS) break;
        if (!this.held.has(key)) this.forget(key);
      }
    }
    if (this.recent.size <= MAX_TRANSIENT && this.transientChars <= MAX_TRANSIENT_CHARS) return;
    for (const key of this.recent.keys()) {
      if (this.recent.size <= MAX_TRANSIENT && this.transientChars <= MAX_TRANSIENT_CHARS) return;
      if (!this.held.has(key)) this.forget(key);
    }
  }

  /** Text as the given session may see it; without a scope (log lines), with every secret out. */
  redact(text: string, scope?: string): string {
    if (scope === undefined) return redactWith(text, [this.all]);
    const own = this.scopes.get(scope);
    return redactWith(text, own ? [this.permanent, own] : [this.permanent]);
  }

  /** Redacts every string inside a JSON-like value; returns a new value, never mutates. */
  redactDeep<T>(value: T, scope?: string): T {
    return this.walk(value, scope) as T;
  }

  private forget(key: string): void {
    const entry = this.recent.get(key);
    if (!entry) return;
    const { scope, value } = entry;
    this.recent.delete(key);
    const own = this.byScope.get(scope);
    if (own) {
      own.keys.delete(key);
      own.chars -= value.length;
      if (own.keys.size === 0) this.byScope.delete(scope);
    }
    const index = this.scopes.get(scope);
    index?.delete(value);
    if (index?.empty) this.scopes.delete(scope);
    const left = (this.holders.get(value) ?? 1) - 1;
    if (left > 0) this.holders.set(value, left);
    else {
      this.holders.delete(value);
      this.all.delete(value);
    }
    this.transientChars -= value.length;
  }

  private walk(value: unknown, scope: string | undefined, depth = 0): unknown {
    if (typeof value === 'string') return this.redact(value, scope);
    if (!value || typeof value !== 'object') return value;
    // Nesting this deep is only ever model-made: cut it rather than pass it on unread.
    if (depth > 64) return '[too deep]';
    if (Array.isArray(value)) return value.map((item) => this.walk(item, scope, depth + 1));
    // An error is logged as its text: its message and stack may quote a secret (pino's serializer would print them as they are).
    if (value instanceof Error) {
      const out: Record<string, unknown> = { type: value.name, message: this.redact(value.message, scope) };
      if (value.stack) out.stack = this.redact(value.stack, scope);
      for (const [key, item] of Object.entries(value)) out[key] = this.walk(item, scope, depth + 1);
      if (value.cause !== undefined) out.cause = this.walk(value.cause, scope, depth + 1);
      return out;
    }
    // Plain objects, and prototype-less ones (Node's HTTP headers).
    const proto = Object.getPrototypeOf(value);
    if (proto === Object.prototype || proto === null) {
      const out: Record<string, unknown> = {};
      for (const [key, item] of Object.entries(value)) out[this.redact(key, scope)] = this.walk(item, scope, depth + 1);
      return out;
    }
    return value;
  }
}
