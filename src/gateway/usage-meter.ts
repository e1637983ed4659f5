/**
 * Reads the usage out of a Messages API response while it streams to the
 * agent: `message_start` carries the input side, `message_delta` the final
 * output count (and web searches). Works on SSE and on plain JSON bodies of
 * any size; a broken stream keeps whatever usage was seen before it broke.
 * The raw API usage is kept (it is what is priced: 1-hour cache writes, web
 * searches); `tokens` is the four-count summary for reports.
 */
import type { TokenUsage } from '../core/model.ts';
import type { ApiUsage } from '../pricing/prices.ts';

/** JSON bodies up to this size are parsed whole; past it, the usage is read from the tail. */
const MAX_JSON_BODY = 1024 * 1024;
/** The top-level usage object closes a JSON body: this much of its end is kept to read it. */
const JSON_TAIL = 64 * 1024;
/** The response's model comes right after id, type and role. */
const JSON_HEAD = 4 * 1024;
/** No usage-bearing SSE event is this large; a bigger one is skipped instead of buffered. */
const MAX_SSE_FRAME = 1024 * 1024;

const TOKEN_FIELDS = ['input_tokens', 'output_tokens', 'cache_creation_input_tokens', 'cache_read_input_tokens'] as const;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The last `"usage": {...}` object of a JSON text (string-aware brace
 * matching), or undefined. A JSON string cannot hold an unescaped `"usage"`,
 * and Anthropic writes the top-level usage after the content, so the last
 * key found is the response's own, not one inside a tool's input.
 */
export function lastUsageObject(text: string): Record<string, unknown> | undefined {
  const keys = [...text.matchAll(/"usage"\s*:\s*\{/g)];
  for (let k = keys.length - 1; k >= 0; k--) {
    const start = keys[k]!.index + keys[k]![0].length - 1;
    let depth = 0;
    let inString = false;
    for (let i = start; i < text.length; i++) {
      const c = text[i];
      if (inString) {
        if (c === '\\') i++;
        else if (c === '"') inString = false;
      } else if (c === '"') inString = true;
      else if (c === '{') depth++;
      else if (c === '}' && --depth === 0) {
        try {
          const value: unknown = JSON.parse(text.slice(start, i + 1));
          if (isRecord(value)) return value;
        } catch {
          // not this one
        }
        break;
      }
    }
  }
  return undefined;
}

export class UsageMeter {
  model: string;
  /** The usage as the API reported it; later events restate totals, so they replace. */
  readonly usage: ApiUsage = {};
  /** A body that should carry a usage but whose usage could not be read. */
  unreadable = false;
  private readonly streaming: boolean;
  private readonly decoder = new TextDecoder();
  private pending = '';
  private skipFrame = false;
  private body = '';
  private bodyLength = 0;
  private head = '';
  private tail = '';

  constructor(contentType: string | undefined, requestModel: string) {
    this.streaming = (contentType ?? '').includes('text/event-stream');
    this.model = requestModel;
  }

  get tokens(): TokenUsage {
    return {
      inputTokens: this.usage.input_tokens ?? 0,
      outputTokens: this.usage.output_tokens ?? 0,
      cacheCreationInputTokens: this.usage.cache_creation_input_tokens ?? 0,
      cacheReadInputTokens: this.usage.cache_read_input_tokens ?? 0,
    };
  }

  /** Anything that costs money was seen. */
  get hasUsage(): boolean {
    const u = this.usage;
    return TOKEN_FIELDS.some((field) => (u[field] ?? 0) > 0) || (u.server_tool_use?.web_search_requests ?? 0) > 0;
  }

  push(chunk: Buffer): void {
    const text = this.decoder.decode(chunk, { stream: true });
    if (this.streaming) this.pushSse(text);
    else this.pushJson(text);
  }

  end(): void {
    const rest = this.decoder.decode();
    if (this.streaming) {
      this.pending += rest;
      if (this.pending.trim() && !this.skipFrame) this.readFrame(this.pending);
      this.pending = '';
      return;
    }
    this.pushJson(rest);
    if (this.bodyLength <= MAX_JSON_BODY) {
      try {
        const body: unknown = JSON.parse(this.body);
        if (isRecord(body)) {
          if (typeof body.model === 'string') this.model = body.model;
          if (isRecord(body.usage)) this.apply(body.usage);
        }
      } catch {
        // not JSON (an error page): nothing was metered
      }
      return;
    }
    const usage = lastUsageObject(this.tail);
    const model = /"model"\s*:\s*"((?:[^"\\]|\\.)*)"/.exec(this.head)?.[1];
    if (model) this.model = model;
    if (usage) this.apply(usage);
    else this.unreadable = true;
  }

  private pushJson(text: string): void {
    this.bodyLength += text.length;
    if (this.head.length < JSON_HEAD) this.head += text.slice(0, JSON_HEAD - this.head.length);
    if (this.bodyLength <= MAX_JSON_BODY) {
      this.body += text;
      return;
    }
    // Too large to keep: from here on only the tail is.
    this.tail = (this.body + this.tail + text).slice(-JSON_TAIL);
    this.body = '';
  }

  private pushSse(text: string): void {
    this.pending += text;
    let boundary: number;
    while ((boundary = this.pending.search(/\r?\n\r?\n/)) !== -1) {
      const frame = this.pending.slice(0, boundary);
      this.pending = this.pending.slice(boundary).replace(/^\r?\n\r?\n/, '');
      if (this.skipFrame) this.skipFrame = false;
      else this.readFrame(frame);
    }
    if (this.pending.length > MAX_SSE_FRAME) {
      // Keep the last bytes: the boundary that ends this frame may start in them.
      this.pending = this.pending.slice(-3);
      this.skipFrame = true;
    }
  }

  private readFrame(frame: string): void {
    const data = frame.split(/\r?\n/).filter((line) => line.startsWith('data:')).map((line) => line.slice(5).trimStart()).join('\n');
    if (!data) return;
    let event: unknown;
    try {
      event = JSON.parse(data);
    } catch {
      return;
    }
    if (!isRecord(event)) return;
    if (event.type === 'message_start' && isRecord(event.message)) {
      if (typeof event.message.model === 'string') this.model = event.message.model;
      if (isRecord(event.message.usage)) this.apply(event.message.usage);
    } else if (event.type === 'message_delta' && isRecord(event.usage)) {
      this.apply(event.usage);
    }
  }

  /** Counts in a later event restate the total so far: they replace, never add. */
  private apply(usage: Record<string, unknown>): void {
    for (const field of TOKEN_FIELDS) if (typeof usage[field] === 'number') this.usage[field] = usage[field];
    const cache = usage.cache_creation;
    if (isRecord(cache)) {
      const into = (this.usage.cache_creation ??= {});
      if (typeof cache.ephemeral_5m_input_tokens === 'number') into.ephemeral_5m_input_tokens = cache.ephemeral_5m_input_tokens;
      if (typeof cache.ephemeral_1h_input_tokens === 'number') into.ephemeral_1h_input_tokens = cache.ephemeral_1h_input_tokens;
    }
    const tools = usage.server_tool_use;
    if (isRecord(tools) && typeof tools.web_search_requests === 'number') {
      (this.usage.server_tool_use ??= {}).web_search_requests = tools.web_search_requests;
    }
  }
}
