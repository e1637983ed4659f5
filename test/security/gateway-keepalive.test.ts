/**
 * The gateway keeps its connections to the upstream alive between calls. An
 * upstream may close an idle one just as the gateway reuses it (its own idle
 * timeout, without saying so in a Keep-Alive header): that call must be sent
 * again on a fresh connection, not failed as "upstream unreachable" (seen in
 * CI when a tool ran longer than the scripted model's 5 s idle timeout).
 */
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { MODEL, CALL, close, type Upstream, startGateway, type Rig, openTask, call } from './gateway-rig.ts';

const ANSWER = JSON.stringify({
  id: 'msg_1', type: 'message', role: 'assistant', model: MODEL, content: [{ type: 'text', text: 'hi' }],
  stop_reason: 'end_turn', usage: { input_tokens: 100, output_tokens: 20 },
});

describe('gateway: a kept-alive upstream connection closed as it is reused', () => {
  let rig: Rig;
  let connections = 0;
  let answered = 0;
  let dropped = 0;
  const server = createServer((socket: Socket) => {
    connections += 1;
    let requests = 0;
    let buffer = '';
    socket.on('data', (chunk) => {
      buffer += chunk.toString('latin1');
      const headEnd = buffer.indexOf('\r\n\r\n');
      if (headEnd < 0) return;
      const length = Number(/content-length: *(\d+)/i.exec(buffer.slice(0, headEnd))?.[1] ?? 0);
      if (buffer.length < headEnd + 4 + length) return;
      buffer = buffer.slice(headEnd + 4 + length);
      requests += 1;
      // Each connection answers its first request and is closed, unanswered, when a second one arrives on it.
      if (requests > 1) {
        dropped += 1;
        socket.destroy();
        return;
      }
      answered += 1;
      socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(ANSWER)}\r\nconnection: keep-alive\r\n\r\n${ANSWER}`);
    });
    socket.on('error', () => undefined);
  });

  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    rig = await startGateway({ url: `http://127.0.0.1:${port}` } as Upstream);
  });
  after(async () => {
    await rig?.close();
    server.close();
  });

  test('the call goes out again on a fresh connection and is answered and metered once', async () => {
    const task = await openTask(rig);
    const body = { model: MODEL, max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] };
    const first = await call(rig, task.token, { body });
    assert.equal(first.status, 200, first.body);
    const second = await call(rig, task.token, { body });
    assert.equal(second.status, 200, second.body);
    assert.equal(second.json.type, 'message');
    assert.deepEqual({ connections, answered, dropped }, { connections: 2, answered: 2, dropped: 1 });
    assert.equal(task.calls.length, 2);
    const meter = await rig.gateway.closeTask(task.taskId);
    assert.ok(close(meter.costUsd, 2 * CALL), `cost ${meter.costUsd}`);
  });
});
