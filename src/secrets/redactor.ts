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
const MAX_TRANSIENT_CHARS = 64 * 1024 * 1024;
/** V8 refuses a regular expression with a literal much over 32k characters: longer secrets are replaced by search. */
const MAX_PATTERN_SECRET = 4096;

export class Redactor {
  private readonly permanent = new Set<string>();
  private readonly transient = new Set<string>();
  private transientChars = 0;
  private pattern: RegExp | null = null;
  /** Secrets too long for the pattern, longest first. */
  private long: string[] = [];

  /** Secrets of the process itself (credentials, API keys): kept for its whole life. */
  addPermanent(...values: Array<string | undefined>): void {
    for (const value of values) if (value && value.length >= MIN_SECRET_LENGTH) this.permanent.add(value);
    this.pattern = null;
  }

  /** Per-task secrets (env values, tokens); the oldest are forgotten past a bound. */
  add(...values: Array<string | undefined>): void {
    for (const value of values) {
      if (!value || value.length < MIN_SECRET_LENGTH || this.permanent.has(value)) continue;
      if (this.transient.delete(value)) this.transientChars -= value.length;
      this.transient.add(value);
      this.transientChars += value.length;
      while (this.transient.size > MAX_TRANSIENT || this.transientChars > MAX_TRANSIENT_CHARS) {
        const oldest = this.transient.values().next().value!;
        this.transient.delete(oldest);
        this.transientChars -= oldest.length;
      }
    }
    this.pattern = null;
  }

  redact(text: string): string {
    const pattern = this.compile();
    for (const secret of this.long) if (text.includes(secret)) text = text.split(secret).join(REDACTED);
    return pattern ? text.replace(pattern, REDACTED) : text;
  }

  /** Redacts every string inside a JSON-like value; returns a new value, never mutates. */
  redactDeep<T>(value: T): T {
    if (!this.compile()) return value;
    return this.walk(value) as T;
  }

  /** The process's own secrets (credentials, API keys). */
  permanentSecrets(): string[] {
    return [...this.permanent];
  }

  private walk(value: unknown, depth = 0): unknown {
    if (typeof value === 'string') return this.redact(value);
    if (depth > 64 || !value || typeof value !== 'object') return value;
    if (Array.isArray(value)) return value.map((item) => this.walk(item, depth + 1));
    // An error is logged as its text: its message and stack may quote a secret (pino's serializer would print them as they are).
    if (value instanceof Error) {
      const out: Record<string, unknown> = { type: value.name, message: this.redact(value.message) };
      if (value.stack) out.stack = this.redact(value.stack);
      for (const [key, item] of Object.entries(value)) out[key] = this.walk(item, depth + 1);
      if (value.cause !== undefined) out.cause = this.walk(value.cause, depth + 1);
      return out;
    }
    // Plain objects, and prototype-less ones (Node's HTTP headers).
    const proto = Object.getPrototypeOf(value);
    if (proto === Object.prototype || proto === null) {
      const out: Record<string, unknown> = {};
      for (const [key, item] of Object.entries(value)) out[this.redact(key)] = this.walk(item, depth + 1);
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
    this.long = all.filter((s) => s.length > MAX_PATTERN_SECRET);
    const short = all.filter((s) => s.length <= MAX_PATTERN_SECRET);
    // A pattern that matches nothing keeps the cache valid when every secret is long.
    this.pattern = new RegExp(short.length ? short.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|') : '(?!)', 'g');
    return this.pattern;
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

  constructor(redactor: Redactor, watched: Iterable<string | undefined>) {
    this.redactor = redactor;
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
    return this.redactor.redact(out + head.slice(at));
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

  constructor(redactor: Redactor, watched: Iterable<string | undefined>) {
    const all = [...redactor.permanentSecrets(), ...watched];
    this.streams = { text: new StreamRedactor(redactor, all), thinking: new StreamRedactor(redactor, all) };
    this.cut = new StreamRedactor(redactor, all);
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
