/**
 * The agent's events as they may be stored: streamed deltas and cut-short
 * tool results through StreamRedactors, so a secret split across pieces or
 * cut in half never reaches the event log. Used by task-execution.ts.
 *
 * Owns: which agent events are redacted as streams, and how a held-back end
 * is given out. Must not touch: how secrets are matched or kept (src/secrets/),
 * the event log (it redacts whole events itself).
 */
import type { Redactor } from '../secrets/redactor.ts';
import { StreamRedactor } from '../secrets/stream-redactor.ts';

type StreamedKind = 'text' | 'thinking';
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
    // A long tool result is cut short by the runtime (it says so), possibly through a secret.
    const data = event.type === 'tool_end' ? (event.data as { result?: unknown; truncated?: boolean }) : undefined;
    if (data?.truncated && typeof data.result === 'string') {
      return [...this.flush(), { ...event, data: { ...data, result: this.cut.cutEnd(data.result) } }];
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
