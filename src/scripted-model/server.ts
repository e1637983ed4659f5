// The HTTP server: Messages API routes, control routes, request log.
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';
import { sendError, sendJson, sendTurn } from './respond.ts';
import { detectSideCall } from './conversation.ts';
import { echoReply, resolveTurn, sideReply } from './script.ts';
import type { Classifier, Script } from './script.ts';
import { parseJsonScript } from './script-json.ts';
import type { MessagesRequest, RecordedRequest, RequestFilter, Rule, TurnSpec } from './types.ts';

export interface ScriptedModelOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  rules?: Rule[];
  /** Answers main requests that no rule matches; default: `Echo: <prompt>`. */
  defaultReply?: TurnSpec;
  /** Answers CLI side requests that no rule claims; default: `sideReply` of script.ts. */
  sideReply?: TurnSpec;
  /** Tells side requests from the agent loop; default `detectSideCall` (known CLI prompts). */
  classify?: Classifier;
  /** If set, /v1/* requests with another key (x-api-key or Bearer) get 401. */
  requireApiKey?: string;
  /** Oldest entries are dropped beyond this; default 1000 (CLI requests are ~50 kB each). */
  maxRecorded?: number;
}

export interface SetRulesOptions {
  defaultReply?: TurnSpec;
  sideReply?: TurnSpec;
}

export interface ScriptedModel {
  /** e.g. `http://127.0.0.1:43121`: use as ANTHROPIC_BASE_URL. */
  readonly url: string;
  readonly port: number;
  readonly host: string;
  /** Snapshot of the request log, oldest first. */
  readonly requests: RecordedRequest[];
  findRequests(filter: RequestFilter): RecordedRequest[];
  setRules(rules: Rule[], opts?: SetRulesOptions): void;
  clearRequests(): void;
  close(): Promise<void>;
}

export function filterRequests(list: RecordedRequest[], f: RequestFilter): RecordedRequest[] {
  return list.filter((r) => {
    if (f.kind !== undefined && r.kind !== f.kind) return false;
    if (f.rule !== undefined && r.rule !== f.rule) return false;
    if (f.path !== undefined && !r.path.startsWith(f.path)) return false;
    if (f.prompt !== undefined) {
      const p = r.prompt ?? '';
      if (typeof f.prompt === 'string' ? !p.includes(f.prompt) : !new RegExp(f.prompt.source, f.prompt.flags.replace(/[gy]/g, '')).test(p)) return false;
    }
    return true;
  });
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of req) parts.push(c as Buffer);
  const raw = Buffer.concat(parts);
  switch (String(req.headers['content-encoding'] ?? '').toLowerCase()) {
    case 'gzip':
      return zlib.gunzipSync(raw);
    case 'deflate':
      return zlib.inflateSync(raw);
    case 'br':
      return zlib.brotliDecompressSync(raw);
    case 'zstd':
      return zlib.zstdDecompressSync(raw);
    default:
      return raw;
  }
}

function apiKeyOf(req: IncomingMessage): string | undefined {
  const key = req.headers['x-api-key'];
  if (typeof key === 'string') return key;
  const auth = req.headers.authorization;
  return typeof auth === 'string' && /^bearer /i.test(auth) ? auth.slice(7).trim() : undefined;
}

/** Rough but stable: about four characters per token, like English text. */
export function countTokens(body: MessagesRequest): number {
  const size = JSON.stringify([body.system ?? '', body.messages ?? [], body.tools ?? []]).length;
  return Math.max(1, Math.ceil(size / 4));
}

export async function startScriptedModel(opts: ScriptedModelOptions = {}): Promise<ScriptedModel> {
  let script: Script = {
    rules: opts.rules ?? [],
    defaultReply: opts.defaultReply ?? echoReply,
    sideReply: opts.sideReply ?? sideReply,
    classify: opts.classify ?? detectSideCall,
  };
  const maxRecorded = opts.maxRecorded ?? 1000;
  let log: RecordedRequest[] = [];
  let seq = 0;

  const setRules = (rules: Rule[], o: SetRulesOptions = {}) => {
    // One assignment: requests in flight keep the script they started with.
    script = {
      rules: [...rules],
      defaultReply: o.defaultReply ?? script.defaultReply,
      sideReply: o.sideReply ?? script.sideReply,
      classify: script.classify,
    };
  };

  async function control(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    if (url.pathname === '/_scripted/requests' && req.method === 'GET') {
      const f: RequestFilter = {};
      const kind = url.searchParams.get('kind');
      if (kind) f.kind = kind as RequestFilter['kind'];
      const r = url.searchParams.get('rule');
      if (r) f.rule = r;
      const p = url.searchParams.get('path');
      if (p) f.path = p;
      const prompt = url.searchParams.get('prompt');
      if (prompt) f.prompt = prompt;
      return sendJson(res, 200, filterRequests(log, f));
    }
    if (url.pathname === '/_scripted/requests' && req.method === 'DELETE') {
      const cleared = log.length;
      log = [];
      return sendJson(res, 200, { cleared });
    }
    if (url.pathname === '/_scripted/script' && req.method === 'PUT') {
      try {
        const parsed = parseJsonScript(JSON.parse((await readBody(req)).toString('utf8')));
        const o: SetRulesOptions = {};
        if (parsed.defaultReply) o.defaultReply = parsed.defaultReply;
        if (parsed.sideReply) o.sideReply = parsed.sideReply;
        setRules(parsed.rules, o);
        return sendJson(res, 200, { rules: parsed.rules.length });
      } catch (err) {
        return sendError(res, 400, (err as Error).message);
      }
    }
    if (url.pathname === '/_scripted/health' && req.method === 'GET') return sendJson(res, 200, { ok: true });
    return sendError(res, 404, `no control route ${req.method} ${url.pathname}`);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://scripted.invalid');
    if (url.pathname.startsWith('/_scripted/')) return control(req, res, url);

    const raw = await readBody(req);
    let body: unknown = raw.toString('utf8');
    try {
      body = JSON.parse(body as string);
    } catch {
      // keep the raw text in the log
    }
    const rec: RecordedRequest = {
      seq: ++seq,
      time: new Date().toISOString(),
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      headers: { ...req.headers },
      body,
      kind: 'other',
    };
    log.push(rec);
    if (log.length > maxRecorded) log.splice(0, log.length - maxRecorded);
    res.on('finish', () => (rec.status = res.statusCode));
    res.on('close', () => (rec.status ??= res.headersSent ? res.statusCode : 0));

    if (opts.requireApiKey !== undefined && url.pathname.startsWith('/v1/') && apiKeyOf(req) !== opts.requireApiKey) {
      return sendError(res, 401, 'invalid x-api-key', 'authentication_error');
    }
    const isJson = typeof body === 'object' && body !== null && !Array.isArray(body);
    if (req.method === 'POST' && url.pathname === '/v1/messages/count_tokens') {
      rec.kind = 'count_tokens';
      if (!isJson) return sendError(res, 400, 'request body must be a JSON object');
      return sendJson(res, 200, { input_tokens: countTokens(body as MessagesRequest) });
    }
    if (req.method === 'POST' && url.pathname === '/v1/messages') {
      if (!isJson) return sendError(res, 400, 'request body must be a JSON object');
      const mr = body as MessagesRequest;
      const model = String(mr.model ?? 'scripted-model');
      rec.model = model;
      rec.stream = mr.stream === true;
      const r = await resolveTurn(script, mr, rec.headers);
      rec.kind = r.side !== undefined ? 'side' : 'main';
      if (r.side !== undefined) rec.side = r.side;
      rec.prompt = r.conversation.prompt;
      rec.rule = r.rule;
      rec.turnIndex = r.conversation.turnIndex;
      if (r.exhausted) rec.exhausted = true;
      return sendTurn(res, r.turn, model, mr.stream === true);
    }
    return sendError(res, 404, `scripted model has no route ${req.method} ${url.pathname}`);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendError(res, 500, `scripted model failed: ${(err as Error)?.message ?? String(err)}`);
      else res.destroy();
    });
  });
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;

  return {
    url: `http://${urlHost}:${port}`,
    port,
    host,
    get requests() {
      return [...log];
    },
    findRequests: (f) => filterRequests(log, f),
    setRules,
    clearRequests: () => {
      log = [];
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections(); // the CLI keeps connections alive
      }),
  };
}
