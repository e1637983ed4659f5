/**
 * Redaction of text that arrives in pieces (the model's streamed text and
 * thinking): a secret split across two pieces is still taken out.
 *
 * Owns: holding back a text's end that could begin a watched secret. Must
 * not touch: which secrets are registered or for how long (redactor.ts), nor
 * which events stream (src/tasks/agent-event-redactor.ts decides).
 */
import type { Redactor } from './redactor.ts';
import { MIN_SECRET_LENGTH, REDACTED } from './secret-index.ts';

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
