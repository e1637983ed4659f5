/**
 * The OpenAPI document tells the truth (issue 10): it is valid OpenAPI 3.1,
 * documents every route the server registered (and nothing else), names the
 * headers, error codes and event types, and every operation, called for real
 * (a success and at least one error each), answers with a status the document
 * lists and a body its schema for that status accepts (Ajv, JSON Schema 2020-12).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { validate as validateOpenApi, compileErrors } from '@readme/openapi-parser';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { errorTable } from '../../src/core/errors.ts';
import { storedEventTypes } from '../../src/core/events.ts';
import { bash, rule, text, toolUse, withThinking } from '../../src/scripted-model/index.ts';
import { WsClient } from '../events/support.ts';
import { rawRequest } from '../sessions/support.ts';
import { eventually, startHarness, type Harness } from '../support/harness.ts';

type Schema = Record<string, unknown>;
interface Operation { responses: Record<string, { content?: Record<string, { schema: Schema }> }>; parameters?: Array<{ in: string; name: string }> }
interface Document { openapi: string; info: { version: string }; servers: unknown; paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, Schema> } }

/** Routes that are not the API: the reference page itself, and the dashboard's page and files. */
const NOT_API = [/^\/docs(\/|$)/, /^\/$/, /^\/ui\//, /^\/\*$/];

/** The routes as fastify's printRoutes draws them: "METHOD /path/:param/*" (HEAD, OPTIONS left out). */
function registeredRoutes(tree: string): string[] {
  const routes: string[] = [];
  const prefixes: string[] = [];
  for (const line of tree.split('\n')) {
    const match = /^([│ ]*)[├└]── (.+?) \(([A-Z, ]+)\)$/.exec(line);
    if (!match) continue;
    const depth = match[1]!.length / 4;
    let path = (prefixes[depth - 1] ?? '') + match[2]!;
    prefixes[depth] = path;
    // A wildcard is drawn under its static parent without the slash between them ("/files" → "*").
    path = path.replace(/([^/])\*$/, '$1/*');
    for (const method of match[3]!.split(', ')) if (method !== 'HEAD' && method !== 'OPTIONS') routes.push(`${method} ${path}`);
  }
  return routes;
}

/** "GET /session/:sessionId/files/*" → "GET /session/{sessionId}/files/{path}", as the document spells it. */
const documentKey = (route: string): string => route.replace(/:(\w+)/g, '{$1}').replace(/\/\*$/, '/{path}');

/** The frames of an SSE body: each event's data as JSON, and its type. */
function sseFrames(body: string): Array<{ event: string; data: any }> {
  return body.split('\n\n').map((block) => {
    const event = /^event: (.+)$/m.exec(block)?.[1];
    const data = /^data: (.+)$/m.exec(block)?.[1];
    return event && data ? { event, data: JSON.parse(data) } : undefined;
  }).filter((frame) => frame !== undefined);
}

describe('the OpenAPI document', () => {
  let h: Harness;
  let doc: Document;
  const ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
  const compiled = new Map<string, ValidateFunction>();
  /** Statuses seen per documented operation ("GET /path"). */
  const exercised = new Map<string, Set<number>>();

  /** The schema `at` (a JSON pointer into the document) as Ajv sees it: its $refs resolve to the document's components. */
  function validatorAt(pointer: string, schema: Schema): ValidateFunction {
    let validator = compiled.get(pointer);
    if (!validator) compiled.set(pointer, (validator = ajv.compile({ ...schema, components: doc.components })));
    return validator;
  }

  function assertValid(schema: Schema, pointer: string, value: unknown, what: string): void {
    const validator = validatorAt(pointer, schema);
    assert.ok(validator(value), `${what}: ${ajv.errorsText(validator.errors)}\n${JSON.stringify(value).slice(0, 600)}`);
  }

  /** Checks a real answer against the document: a listed status, its media type, a body its schema accepts. */
  function check(operation: string, status: number, contentType: string | null, body: unknown): void {
    const [method, path] = operation.split(' ') as [string, string];
    const documented = doc.paths[path]?.[method.toLowerCase()];
    assert.ok(documented, `${operation} is not in the document`);
    const response = documented.responses[String(status)];
    assert.ok(response, `${operation} answered ${status}, which the document does not list (${Object.keys(documented.responses)}): ${JSON.stringify(body)}`);
    const content = response.content ?? {};
    const media = Object.keys(content).find((type) => type === '*/*' || (contentType ?? '').startsWith(type))
      ?? (status === 101 ? 'application/json' : undefined);
    assert.ok(media, `${operation} ${status}: content type ${contentType} is not documented (${Object.keys(content)})`);
    if (media === 'application/json') {
      const pointer = `${operation} ${status}`;
      const frames = status === 101 ? body as unknown[] : [body];
      for (const frame of frames) assertValid(content[media]!.schema, pointer, frame, `${operation} ${status}`);
    }
    const seen = exercised.get(operation) ?? new Set<number>();
    seen.add(status);
    exercised.set(operation, seen);
  }

  /** Calls the API through the harness client and checks the answer. */
  async function call(operation: string, url: string, init: Parameters<Harness['api']>[1] = {}) {
    const method = operation.split(' ')[0]!;
    const res = await h.api(url, { method, ...init });
    check(operation, res.status, res.headers.get('content-type'), res.body);
    return res;
  }

  before(async () => {
    h = await startHarness({
      rules: [
        rule('oa-tools', withThinking('Let me look.', bash('echo from-the-tool', { text: 'Running a command.' })), text('All done.')),
        rule('oa-sleeper', bash('sleep 60')),
        rule('oa-hello', text('hello')),
        rule('oa-ask', toolUse('AskUserQuestion', { questions: [{ question: 'Go?', header: 'Go', multiSelect: false, options: [{ label: 'Yes', description: 'go' }, { label: 'No', description: 'stop' }] }] }), text('went')),
      ],
    });
    const res = await fetch(`${h.url}/openapi.json`);
    assert.equal(res.status, 200);
    doc = await res.json() as Document;
  });
  after(async () => h?.close());

  test('is valid OpenAPI 3.1 with the package\'s version and a relative server', async () => {
    const result = await validateOpenApi(structuredClone(doc) as never);
    assert.ok(result.valid, compileErrors(result));
    assert.equal(doc.openapi, '3.1.0');
    const { version } = JSON.parse(await import('node:fs').then((fs) => fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')));
    assert.equal(doc.info.version, version);
    assert.deepEqual(doc.servers, [{ url: '/' }]);
  });

  test('documents every route the server registered, and only those', () => {
    const registered = registeredRoutes(h.runner.http.printRoutes({ commonPrefix: false }))
      .filter((route) => !NOT_API.some((pattern) => pattern.test(route.split(' ')[1]!)));
    assert.ok(registered.length >= 19, registered.join('\n'));
    const inDocument = Object.entries(doc.paths).flatMap(([path, methods]) => Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`));
    assert.deepEqual(registered.map(documentKey).sort(), inDocument.sort());
  });

  test('names the headers, every error code and every stored event type', () => {
    const headers = (operation: Operation | undefined) => (operation?.parameters ?? []).filter((p) => p.in === 'header').map((p) => p.name);
    assert.deepEqual(headers(doc.paths['/task']?.post), ['Idempotency-Key']);
    assert.deepEqual(headers(doc.paths['/session/{sessionId}/events']?.get), ['Last-Event-ID']);
    assert.deepEqual(headers(doc.paths['/tasks/{taskId}/events']?.get), ['Last-Event-ID']);
    assert.deepEqual(doc.components.schemas.ErrorCode?.enum, Object.keys(errorTable));
    const text = JSON.stringify(doc.paths);
    for (const code of Object.keys(errorTable)) {
      if (code !== 'ROUTE_NOT_FOUND') assert.ok(text.includes(`\`${code}\``), `no route says it answers ${code}`);
    }
    const frame = JSON.stringify(doc.components.schemas.StreamFrame);
    for (const type of storedEventTypes) {
      const schema = doc.components.schemas[`Event_${type}`] as { properties: { type: { const: string } } } | undefined;
      assert.equal(schema?.properties.type.const, type, `Event_${type}`);
      assert.ok(frame.includes(`#/components/schemas/Event_${type}`), `StreamFrame lacks ${type}`);
    }
    for (const type of ['connected', 'gap', 'error']) assert.ok(frame.includes(`#/components/schemas/Frame_${type}`), type);
  });

  test('every operation answers as documented: a success and an error each', async () => {
    // Runner, tokens, the document.
    await call('GET /health', '/health');
    await call('GET /metrics', '/metrics');
    await call('GET /openapi.json', '/openapi.json');
    for (const path of ['/health', '/metrics', '/openapi.json']) {
      const foreign = await rawRequest(h.url, 'GET', path, undefined, { host: 'evil.example' });
      check(`GET ${path}`, foreign.status, foreign.headers['content-type'] ?? null, foreign.json);
      assert.equal(foreign.json.error.code, 'HOST_NOT_ALLOWED');
    }
    await call('POST /auth/stream-token', '/auth/stream-token', { json: { sessionId: 'oa-main', ttlSeconds: 60 } });
    await call('POST /auth/stream-token', '/auth/stream-token');
    const badToken = await call('POST /auth/stream-token', '/auth/stream-token', { json: { ttlSeconds: 1, extra: true } });
    assert.equal(badToken.body.error.code, 'INVALID_REQUEST');
    assert.deepEqual(badToken.body.error.details.issues.length, 2, JSON.stringify(badToken.body));

    // Tasks: blocking, with tools and thinking; accepted at once; refused; replayed; conflicting.
    const done = await call('POST /task', '/task', { json: { sessionId: 'oa-main', message: 'oa-tools please' }, headers: { 'idempotency-key': 'oa-1' } });
    assert.equal(done.status, 200, JSON.stringify(done.body));
    const replay = await call('POST /task', '/task', { json: { sessionId: 'oa-main', message: 'oa-tools please' }, headers: { 'idempotency-key': 'oa-1' } });
    assert.equal(replay.headers.get('idempotent-replay'), 'true');
    const conflict = await call('POST /task', '/task', { json: { sessionId: 'oa-main', message: 'something else' }, headers: { 'idempotency-key': 'oa-1' } });
    assert.equal(conflict.body.error.code, 'IDEMPOTENCY_CONFLICT');
    const empty = await call('POST /task', '/task');
    assert.equal(empty.status, 400);
    assert.match(empty.body.error.message, /sessionId/);
    const badKey = await call('POST /task', '/task', { json: { sessionId: 'oa-main', message: 'x' }, headers: { 'idempotency-key': 'has space' } });
    assert.match(badKey.body.error.message, /idempotency-key/);
    const running = await call('POST /task', '/task', { json: { sessionId: 'oa-busy', message: 'oa-sleeper', wait: false } });
    assert.equal(running.status, 202);
    const taskId = done.body.taskId as string;

    await call('GET /tasks/{taskId}', `/tasks/${taskId}`);
    await call('GET /tasks/{taskId}', '/tasks/task_nope');
    await call('GET /tasks/{taskId}/deliveries', `/tasks/${taskId}/deliveries`);
    await call('GET /tasks/{taskId}/deliveries', '/tasks/task_nope/deliveries');
    // A question to a person: answered, then no longer pending; refused before and after.
    const asking = await call('POST /task', '/task', { json: { sessionId: 'oa-ask', message: 'oa-ask', wait: false } });
    const askId = asking.body.taskId as string;
    const waiting = await eventually(async () => {
      const res = await h.api(`/tasks/${askId}`);
      return res.body.status === 'awaiting_input' ? res.body : undefined;
    }, 30_000, 'the question');
    const requestId = waiting.pendingInput[0].requestId as string;
    const wrongKind = await call('POST /tasks/{taskId}/input', `/tasks/${askId}/input`, { json: { requestId, decision: 'allow' } });
    assert.equal(wrongKind.body.error.code, 'INVALID_REQUEST');
    const answer = await call('POST /tasks/{taskId}/input', `/tasks/${askId}/input`, { json: { requestId, answers: { 'Go?': 'Yes' } } });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    const stale = await call('POST /tasks/{taskId}/input', `/tasks/${askId}/input`, { json: { requestId, answers: { 'Go?': 'Yes' } } });
    assert.equal(stale.body.error.code, 'INPUT_NOT_PENDING');
    await call('POST /tasks/{taskId}/input', '/tasks/task_nope/input', { json: { requestId, decision: 'deny' } });
    await call('POST /tasks/{taskId}/abort', `/tasks/${taskId}/abort`);
    await call('POST /tasks/{taskId}/abort', '/tasks/task_nope/abort');
    await call('POST /task/{sessionId}/abort', '/task/oa-busy/abort');
    await call('POST /task/{sessionId}/abort', '/task/oa-nobody/abort');
    const badId = await call('POST /task/{sessionId}/abort', '/task/.hidden/abort');
    assert.equal(badId.body.error.code, 'INVALID_SESSION_ID');
    await call('GET /session/{sessionId}/tasks', '/session/oa-main/tasks?limit=1');
    await call('GET /session/{sessionId}/tasks', '/session/oa-main/tasks?limit=0');
    await call('GET /session/{sessionId}/tasks', '/session/oa-nobody/tasks');

    // Sessions.
    const page = await call('GET /sessions', '/sessions?limit=1');
    assert.ok(page.headers.get('x-next-cursor'));
    await call('GET /sessions', '/sessions?limit=zero');
    await call('GET /session/{sessionId}', '/session/oa-main');
    await call('GET /session/{sessionId}', '/session/oa-nobody');
    await call('POST /session/{sessionId}/reset', '/session/oa-busy/reset');
    await call('POST /session/{sessionId}/reset', '/session/oa-nobody/reset');

    // Files: raw bytes in and out.
    const written = await call('PUT /session/{sessionId}/files/{path}', '/session/oa-main/files/out/report.txt', { body: 'some bytes', headers: { 'content-type': 'text/csv' } });
    assert.equal(written.status, 201);
    await call('PUT /session/{sessionId}/files/{path}', '/session/oa-nobody/files/x.txt', { body: 'x' });
    const escape = await call('PUT /session/{sessionId}/files/{path}', '/session/oa-main/files/..%2Fescape', { body: 'x' });
    assert.equal(escape.body.error.code, 'INVALID_PATH');
    const listed = await call('GET /session/{sessionId}/files', '/session/oa-main/files?path=out');
    assert.deepEqual(listed.body.files.map((f: { path: string }) => f.path), ['out/report.txt']);
    await call('GET /session/{sessionId}/files', '/session/oa-nobody/files');
    const read = await call('GET /session/{sessionId}/files/{path}', '/session/oa-main/files/out/report.txt');
    assert.equal(read.text, 'some bytes');
    await call('GET /session/{sessionId}/files/{path}', '/session/oa-main/files/nothing-here');
    await call('DELETE /session/{sessionId}/files/{path}', '/session/oa-main/files/out/report.txt');
    await call('DELETE /session/{sessionId}/files/{path}', '/session/oa-main/files/out/report.txt');

    // Streams: every frame of a finished task, by SSE (task and session) and WebSocket.
    const taskStream = await fetch(`${h.url}/tasks/${taskId}/events`);
    const taskFrames = sseFrames(await taskStream.text());
    check('GET /tasks/{taskId}/events', taskStream.status, taskStream.headers.get('content-type'), null);
    const frameSchema = doc.paths['/tasks/{taskId}/events']!.get!.responses['200']!.content!['text/event-stream']!.schema;
    for (const frame of taskFrames) {
      assert.equal(frame.data.type, frame.event);
      assertValid(frameSchema, 'frames', frame.data, `SSE ${frame.event}`);
    }
    const types = new Set(taskFrames.map((frame) => frame.event));
    for (const type of ['connected', 'task_queued', 'task_start', 'init', 'thinking', 'text', 'tool_start', 'tool_end', 'usage', 'task_complete']) assert.ok(types.has(type), `no ${type} frame: ${[...types]}`);
    await call('GET /tasks/{taskId}/events', '/tasks/task_nope/events');

    const sessionStream = new AbortController();
    const sse = await fetch(`${h.url}/session/oa-main/events?after=0`, { signal: sessionStream.signal });
    check('GET /session/{sessionId}/events', sse.status, sse.headers.get('content-type'), null);
    let received = '';
    const decoder = new TextDecoder();
    for await (const chunk of sse.body!) {
      received += decoder.decode(chunk as Uint8Array);
      if (received.includes('event: task_complete')) break;
    }
    sessionStream.abort();
    const sessionFrames = sseFrames(received);
    assert.ok(sessionFrames.length > 5);
    for (const frame of sessionFrames) assertValid(frameSchema, 'frames', frame.data, `session SSE ${frame.event}`);
    const badSeq = await call('GET /session/{sessionId}/events', '/session/oa-main/events', { headers: { 'last-event-id': 'abc' } });
    assert.equal(badSeq.body.error.code, 'INVALID_REQUEST');

    const ws = await WsClient.open(h.url, 'oa-main', '?after=0');
    await ws.waitFor((frame) => frame.type === 'task_complete');
    ws.socket.close();
    check('GET /stream/{sessionId}', 101, null, ws.frames);
    const refused = await WsClient.open(h.url, '.hidden').then(() => null, (error: { status: number; body: string }) => error);
    assert.ok(refused);
    check('GET /stream/{sessionId}', refused.status, 'application/json', JSON.parse(refused.body));

    // Deleting comes last: it removes the session the others used.
    await call('DELETE /session/{sessionId}', '/session/oa-busy');
    await call('DELETE /session/{sessionId}', '/session/oa-busy');

    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const method of Object.keys(methods)) {
        const operation = `${method.toUpperCase()} ${path}`;
        const statuses = [...(exercised.get(operation) ?? [])];
        assert.ok(statuses.some((s) => s < 300), `${operation}: no success exercised (${statuses})`);
        assert.ok(statuses.some((s) => s >= 400), `${operation}: no error exercised (${statuses})`);
      }
    }
  });

  test('/docs is the reference page, served from here without a key', async () => {
    const page = await fetch(`${h.url}/docs/`);
    assert.equal(page.status, 200);
    const html = await page.text();
    assert.match(html, /swagger-ui/i);
    assert.ok(!/https?:\/\//.test(html.replace(/<!--[\s\S]*?-->/g, '').replace(/xmlns="[^"]*"/g, '')), 'the page must load nothing from elsewhere');
    const json = await fetch(`${h.url}/docs/json`);
    assert.equal(json.status, 200);
    assert.equal(((await json.json()) as Document).openapi, '3.1.0');
  });
});
