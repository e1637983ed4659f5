// Writes a Turn as a Messages API response: SSE stream, JSON message, HTTP
// error, or a deliberately broken stream.
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { stopReasonOf, usageOf } from './script.ts';
import type { ScriptBlock, Turn } from './types.ts';

/** Characters per text/thinking delta and per input_json delta. */
export const TEXT_CHUNK = 8;
export const JSON_CHUNK = 16;
const FAKE_SIGNATURE = 'c2NyaXB0ZWQtbW9kZWwtdGhpbmtpbmctc2lnbmF0dXJl';

const ERROR_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  500: 'api_error',
  529: 'overloaded_error',
};

export function errorTypeFor(status: number): string {
  return ERROR_TYPES[status] ?? (status >= 500 ? 'api_error' : 'invalid_request_error');
}

function id(prefix: string): string {
  return `${prefix}_${randomBytes(12).toString('hex')}`;
}

/** Splits by code points so no delta ends inside a surrogate pair. */
export function chunks(s: string, size: number): string[] {
  const cps = Array.from(s);
  const out: string[] = [];
  for (let i = 0; i < cps.length; i += size) out.push(cps.slice(i, i + size).join(''));
  return out.length > 0 ? out : [''];
}

export function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

export function sendError(res: ServerResponse, status: number, message: string, type?: string): void {
  sendJson(res, status, { type: 'error', error: { type: type ?? errorTypeFor(status), message } }, { 'request-id': id('req') });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function gone(res: ServerResponse): boolean {
  return res.destroyed || res.writableEnded;
}

/** Gives tool_use blocks their ids once, so stream and history agree. */
function finalBlocks(turn: Turn): Array<Exclude<ScriptBlock, { type: 'tool_use' }> | (ScriptBlock & { type: 'tool_use'; id: string })> {
  return turn.content.map((b) => (b.type === 'tool_use' ? { ...b, id: b.id ?? id('toolu') } : b));
}

function apiBlock(b: ReturnType<typeof finalBlocks>[number]): unknown {
  if (b.type === 'thinking') return { type: 'thinking', thinking: b.thinking, signature: b.signature ?? FAKE_SIGNATURE };
  return b;
}

export async function sendTurn(res: ServerResponse, turn: Turn, model: string, stream: boolean): Promise<void> {
  if (turn.delayMs) await sleep(turn.delayMs);
  if (gone(res)) return;
  if (turn.error) {
    sendError(res, turn.error.status, turn.error.message ?? `scripted ${turn.error.status} error`, turn.error.type);
    return;
  }
  const usage = usageOf(turn);
  const stopReason = stopReasonOf(turn);
  const blocks = finalBlocks(turn);
  const messageId = id('msg');
  if (!stream) {
    if (turn.malformed) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(`{"id":"${messageId}","type":"message","content":[{"type":"te`);
      res.destroy();
      return;
    }
    sendJson(res, 200, {
      id: messageId,
      type: 'message',
      role: 'assistant',
      model,
      content: blocks.map(apiBlock),
      stop_reason: stopReason,
      stop_sequence: null,
      usage,
    });
    return;
  }

  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'request-id': id('req'),
  });
  const events: Array<[string, Record<string, unknown>]> = [];
  const ev = (type: string, data: Record<string, unknown>) => events.push([type, { type, ...data }]);
  ev('message_start', {
    message: {
      id: messageId,
      type: 'message',
      role: 'assistant',
      model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { ...usage, output_tokens: 1 },
    },
  });
  ev('ping', {});
  if (turn.malformed) {
    await writeEvents(res, events, turn.chunkDelayMs);
    if (!gone(res)) {
      res.write('event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_bl\n\n');
      res.write('data: \u0000garbage{{{\n\n');
    }
    res.destroy();
    return;
  }
  blocks.forEach((b, index) => {
    if (b.type === 'text') {
      ev('content_block_start', { index, content_block: { type: 'text', text: '' } });
      for (const c of chunks(b.text, TEXT_CHUNK)) ev('content_block_delta', { index, delta: { type: 'text_delta', text: c } });
    } else if (b.type === 'thinking') {
      ev('content_block_start', { index, content_block: { type: 'thinking', thinking: '', signature: '' } });
      for (const c of chunks(b.thinking, TEXT_CHUNK)) {
        ev('content_block_delta', { index, delta: { type: 'thinking_delta', thinking: c } });
      }
      ev('content_block_delta', { index, delta: { type: 'signature_delta', signature: b.signature ?? FAKE_SIGNATURE } });
    } else {
      ev('content_block_start', { index, content_block: { type: 'tool_use', id: b.id, name: b.name, input: {} } });
      for (const c of chunks(JSON.stringify(b.input ?? {}), JSON_CHUNK)) {
        ev('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: c } });
      }
    }
    ev('content_block_stop', { index });
  });
  ev('message_delta', { delta: { stop_reason: stopReason, stop_sequence: null }, usage });
  ev('message_stop', {});
  await writeEvents(res, events, turn.chunkDelayMs);
  if (!gone(res)) res.end();
}

async function writeEvents(res: ServerResponse, events: Array<[string, unknown]>, delayMs = 0): Promise<void> {
  for (const [type, data] of events) {
    if (gone(res)) return;
    res.write(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
    if (delayMs > 0) await sleep(delayMs);
  }
}
