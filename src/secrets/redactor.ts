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
 * Owns (with sealer.ts): secrets at rest and on the way out. Must not touch:
 * where secrets come from (config, tasks, the gateway register them).
 */

export const REDACTED = '[REDACTED]';
/** Shorter values would mangle ordinary text ("1", "yes") without hiding anything worth hiding. */
const MIN_SECRET_LENGTH = 6;
/** Task secrets are remembered for later output too; bounded so memory stays flat... */
const MAX_TRANSIENT = 50_000;
const MAX_TRANSIENT_CHARS = 64 * 1024 * 1024;
/** ...and per session, so one session pushes out only its own old secrets. */
const MAX_PER_SCOPE = 1_000;
const MAX_PER_SCOPE_CHARS = 4 * 1024 * 1024;

interface TrieNode {
  /** The characters on the edge into this node. */
  label: string;
  children: Map<number, TrieNode>;
  /** A secret ends here. */
  terminal: boolean;
}

/**
 * Secrets in a radix tree: adding or removing one costs its length, and the
 * longest secret at a position is one walk down the tree, however many
 * secrets share a prefix (a tenant flooding "sk-…" values cannot slow it).
 */
class SecretIndex {
  private readonly root: TrieNode = { label: '', children: new Map(), terminal: false };
  private count = 0;

  get empty(): boolean {
    return this.count === 0;
  }

  add(secret: string): void {
    let node = this.root;
    let at = 0;
    for (;;) {
      if (at === secret.length) {
        if (!node.terminal) this.count += 1;
        node.terminal = true;
        return;
      }
      const first = secret.charCodeAt(at);
      const child = node.children.get(first);
      if (!child) {
        node.children.set(first, { label: secret.slice(at), children: new Map(), terminal: true });
        this.count += 1;
        return;
      }
      let shared = 0;
      while (shared < child.label.length && at + shared < secret.length && child.label.charCodeAt(shared) === secret.charCodeAt(at + shared)) shared += 1;
      if (shared < child.label.length) {
        // Split the edge where the new secret leaves it.
        const middle: TrieNode = { label: child.label.slice(0, shared), children: new Map(), terminal: false };
        child.label = child.label.slice(shared);
        middle.children.set(child.label.charCodeAt(0), child);
        node.children.set(first, middle);
        node = middle;
      } else {
        node = child;
      }
      at += shared;
    }
  }

  delete(secret: string): void {
    const path: TrieNode[] = [this.root];
    let node = this.root;
    let at = 0;
    while (at < secret.length) {
      const child = node.children.get(secret.charCodeAt(at));
      if (!child || !secret.startsWith(child.label, at)) return;
      at += child.label.length;
      node = child;
      path.push(node);
    }
    if (!node.terminal) return;
    node.terminal = false;
    this.count -= 1;
    // Prune what no secret needs any more; merge a lone child into its parent.
    for (let i = path.length - 1; i > 0; i--) {
      const current = path[i]!;
      const parent = path[i - 1]!;
      if (!current.terminal && current.children.size === 0) {
        parent.children.delete(current.label.charCodeAt(0));
      } else if (!current.terminal && current.children.size === 1) {
        const only = [...current.children.values()][0]!;
        only.label = current.label + only.label;
        parent.children.set(only.label.charCodeAt(0), only);
      } else {
        return;
      }
    }
  }

  /** Length of the longest secret that starts at `at` in `text` (0 when none does). */
  matchAt(text: string, at: number): number {
    let node = this.root;
    let position = at;
    let longest = 0;
    while (position < text.length) {
      const child = node.children.get(text.charCodeAt(position));
      if (!child || !text.startsWith(child.label, position)) break;
      position += child.label.length;
      node = child;
      if (node.terminal) longest = position - at;
    }
    return longest;
  }
}

/** Replaces, left to right, the longest secret of any index at each position, in one pass. */
function redactWith(text: string, indexes: SecretIndex[]): string {
  const active = indexes.filter((index) => !index.empty);
  if (active.length === 0 || text.length < MIN_SECRET_LENGTH) return text;
  let out = '';
  let from = 0;
  for (let at = 0; at + MIN_SECRET_LENGTH <= text.length;) {
    let hit = 0;
    for (const index of active) hit = Math.max(hit, index.matchAt(text, at));
    if (hit > 0) {
      out += text.slice(from, at) + REDACTED;
      at += hit;
      from = at;
    } else {
      at += 1;
    }
  }
  return from === 0 ? text : out + text.slice(from);
}

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

/**
 * Redacts text that arrives in pieces (the model's streamed text and
 * thinking), where a secret can be split across two pieces and so escape a
 * piece-by-piece redaction. The end of the text that could be the start of a
 * watched secret is held back until the next piece (or flush) tells.
 * Matching runs a KMP automaton per secret over each character once, so a
 * long secret or a hostile text costs no more than their length.
 */
export class StreamRedactor {
  private readonly redactor: Redactor;
  private readonly secrets: Array<{ value: string; fail: Int32Array; state: number }>;
  /** Text not yet given out, and the [start, end) ranges in it that are whole secrets. */
  private pending = '';
  private matches: Array<[number, number]> = [];

  private readonly scope: string;

  constructor(redactor: Redactor, watched: Iterable<string | undefined>, scope: string) {
    this.redactor = redactor;
    this.scope = scope;
    const unique = new Set<string>();
    for (const value of watched) if (value && value.length >= MIN_SECRET_LENGTH) unique.add(value);
    this.secrets = [...unique].map((value) => ({ value, fail: failureTable(value), state: 0 }));
  }

  /** Takes a piece; returns the redacted text that can go out now (possibly ''). */
  push(piece: string): string {
    const offset = this.pending.length;
    this.pending += piece;
    for (let i = 0; i < piece.length; i++) {
      const char = piece.charCodeAt(i);
      for (const secret of this.secrets) {
        let q = secret.state;
        while (q > 0 && secret.value.charCodeAt(q) !== char) q = secret.fail[q - 1]!;
        if (secret.value.charCodeAt(q) === char) q++;
        if (q === secret.value.length) {
          this.matches.push([offset + i + 1 - q, offset + i + 1]);
          q = secret.fail[q - 1]!;
        }
        secret.state = q;
      }
    }
    // Hold back the longest unfinished match; never cut through a whole one.
    let cut = this.pending.length - Math.max(0, ...this.secrets.map((s) => s.state));
    for (let moved = true; moved;) {
      moved = false;
      for (const [start, end] of this.matches) {
        if (start < cut && end > cut) {
          cut = start;
          moved = true;
        }
      }
    }
    return this.emit(cut);
  }

  /**
   * For a text cut short: redacts whole secrets, and also its end when that
   * end is the start of a secret (a cut through a secret must not give out
   * its first part).
   */
  cutEnd(text: string): string {
    const head = this.push(text);
    const held = this.pending.length > 0;
    this.pending = '';
    this.matches = [];
    for (const secret of this.secrets) secret.state = 0;
    return held ? head + REDACTED : head;
  }

  /** The rest (at the end of the stream, or before another kind of event). */
  flush(): string {
    for (const secret of this.secrets) secret.state = 0;
    return this.emit(this.pending.length);
  }

  private emit(cut: number): string {
    const head = this.pending.slice(0, cut);
    const inside = this.matches.filter(([, end]) => end <= cut).sort((a, b) => a[0] - b[0]);
    this.matches = this.matches.filter(([, end]) => end > cut).map(([start, end]) => [start - cut, end - cut]);
    this.pending = this.pending.slice(cut);
    let out = '';
    let at = 0;
    for (const [start, end] of inside) {
      if (end <= at) continue;
      if (start >= at) out += head.slice(at, start) + REDACTED;
      at = end;
    }
    // The redactor's own pass covers every other registered secret.
    return this.redactor.redact(out + head.slice(at), this.scope);
  }
}

function failureTable(value: string): Int32Array {
  const fail = new Int32Array(value.length);
  for (let i = 1, k = 0; i < value.length; i++) {
    while (k > 0 && value.charCodeAt(i) !== value.charCodeAt(k)) k = fail[k - 1]!;
    if (value.charCodeAt(i) === value.charCodeAt(k)) k++;
    fail[i] = k;
  }
  return fail;
}

type StreamedKind = 'text' | 'thinking';
/** How the runtime marks a tool result it cut short (src/runtime/claude/live-agent.ts). */
const TRUNCATED = '…[truncated]';
type DeltaEvent = { type: 'text'; data: { text: string } } | { type: 'thinking'; data: { text: string } };

/**
 * The agent's events as they may be stored: text and thinking deltas through
 * a StreamRedactor each (a held-back end goes out with the next delta, or
 * before the next event of another kind, or at flush); every other event as
 * it is (the event log redacts whole events).
 */
export class AgentEventRedactor {
  private readonly streams: Record<StreamedKind, StreamRedactor>;
  private readonly cut: StreamRedactor;

  /**
   * `watched` are the session's own secrets only: how deltas are held back
   * depends on them, which an agent can observe, so watching anyone else's
   * (the process's key, other tenants' keys) would let it guess them one
   * character at a time. Those are redacted whole by the redactor's pass.
   */
  constructor(redactor: Redactor, watched: Iterable<string | undefined>, scope: string) {
    const own = [...watched];
    this.streams = { text: new StreamRedactor(redactor, own, scope), thinking: new StreamRedactor(redactor, own, scope) };
    this.cut = new StreamRedactor(redactor, own, scope);
  }

  events<E extends { type: string; data: unknown }>(event: E): Array<E | DeltaEvent> {
    if (event.type === 'text' || event.type === 'thinking') {
      const kind: StreamedKind = event.type;
      const text = this.streams[kind].push((event.data as { text: string }).text);
      return text ? [delta(kind, text)] : [];
    }
    // A long tool result is cut short by the runtime, possibly through a secret.
    const result = event.type === 'tool_end' ? (event.data as { result?: unknown }).result : undefined;
    if (typeof result === 'string' && result.endsWith(TRUNCATED)) {
      const redacted = this.cut.cutEnd(result.slice(0, -TRUNCATED.length)) + TRUNCATED;
      return [...this.flush(), { ...event, data: { ...(event.data as object), result: redacted } }];
    }
    return [...this.flush(), event];
  }

  flush(): DeltaEvent[] {
    const out: DeltaEvent[] = [];
    for (const kind of ['thinking', 'text'] as const) {
      const text = this.streams[kind].flush();
      if (text) out.push(delta(kind, text));
    }
    return out;
  }
}

function delta(kind: StreamedKind, text: string): DeltaEvent {
  return kind === 'text' ? { type: 'text', data: { text } } : { type: 'thinking', data: { text } };
}
