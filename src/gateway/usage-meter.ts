/**
 * Reads the token usage out of a Messages API response while it streams to
 * the agent: `message_start` carries the input side, `message_delta` the
 * final output count. Works on SSE and on plain JSON bodies; a broken stream
 * keeps whatever usage was seen before it broke.
 */
import type { TokenUsage } from '../core/model.ts';

interface ApiUsage {
  input_tokens?: number;
  output_tokens?: number;
  cache_creation_input_tokens?: number;
  cache_read_input_tokens?: number;
}

/** JSON bodies are parsed for usage only up to this size. */
const MAX_JSON_BODY = 8 * 1024 * 1024;

export function emptyUsage(): TokenUsage {
  return { inputTokens: 0, outputTokens: 0, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 };
}

export function addUsage(a: TokenUsage, b: TokenUsage): TokenUsage {
  return {
    inputTokens: a.inputTokens + b.inputTokens,
    outputTokens: a.outputTokens + b.outputTokens,
    cacheCreationInputTokens: a.cacheCreationInputTokens + b.cacheCreationInputTokens,
    cacheReadInputTokens: a.cacheReadInputTokens + b.cacheReadInputTokens,
  };
}

export class UsageMeter {
  model: string;
  readonly usage: TokenUsage = emptyUsage();
  private readonly streaming: boolean;
  private pending = '';
  private jsonBody = '';
  private readonly decoder = new TextDecoder();

  constructor(contentType: string | undefined, requestModel: string) {
    this.streaming = (contentType ?? '').includes('text/event-stream');
    this.model = requestModel;
  }

  push(chunk: Buffer): void {
    const text = this.decoder.decode(chunk, { stream: true });
    if (!this.streaming) {
      if (this.jsonBody.length < MAX_JSON_BODY) this.jsonBody += text;
      return;
    }
    this.pending += text;
    let boundary: number;
    while ((boundary = this.pending.search(/\r?\n\r?\n/)) !== -1) {
      const frame = this.pending.slice(0, boundary);
      this.pending = this.pending.slice(boundary).replace(/^\r?\n\r?\n/, '');
      this.readFrame(frame);
    }
  }

  end(): void {
    if (this.streaming) {
      if (this.pending.trim()) this.readFrame(this.pending);
      this.pending = '';
      return;
    }
    try {
      const body = JSON.parse(this.jsonBody) as { model?: string; usage?: ApiUsage };
      if (body.model) this.model = body.model;
      if (body.usage) this.apply(body.usage);
    } catch {
      // not JSON (an error page): nothing was metered
    }
  }

  private readFrame(frame: string): void {
    const data = frame.split(/\r?\n/).filter((line) => line.startsWith('data:')).map((line) => line.slice(5).trimStart()).join('\n');
    if (!data) return;
    let event: { type?: string; message?: { model?: string; usage?: ApiUsage }; usage?: ApiUsage };
    try {
      event = JSON.parse(data);
    } catch {
      return;
    }
    if (event.type === 'message_start' && event.message) {
      if (event.message.model) this.model = event.message.model;
      if (event.message.usage) this.apply(event.message.usage);
    } else if (event.type === 'message_delta' && event.usage) {
      this.apply(event.usage);
    }
  }

  /** Counts in a later event restate the total so far: they replace, never add. */
  private apply(usage: ApiUsage): void {
    if (typeof usage.input_tokens === 'number') this.usage.inputTokens = usage.input_tokens;
    if (typeof usage.output_tokens === 'number') this.usage.outputTokens = usage.output_tokens;
    if (typeof usage.cache_creation_input_tokens === 'number') this.usage.cacheCreationInputTokens = usage.cache_creation_input_tokens;
    if (typeof usage.cache_read_input_tokens === 'number') this.usage.cacheReadInputTokens = usage.cache_read_input_tokens;
  }
}
