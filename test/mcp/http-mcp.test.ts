/**
 * An HTTP MCP server on this machine, reached from an allowlisted sandbox
 * through the gateway's egress proxy (Claude Code's HTTP MCP client and the
 * HTTP(S)_PROXY env of the agent process).
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { rule, text, toolUse } from '../../src/scripted-model/index.ts';
import { startHarness, type Harness } from '../support/harness.ts';

/** A stateless streamable-HTTP MCP server: every POST is one JSON-RPC message, answered as JSON. */
function startHttpMcp(): Promise<{ server: Server; port: number; calls: string[] }> {
  const calls: string[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      if (req.method !== 'POST') { res.writeHead(405).end(); return; }
      const msg = JSON.parse(body);
      calls.push(msg.method);
      if (msg.id === undefined) { res.writeHead(202).end(); return; }
      const result = msg.method === 'initialize'
        ? { protocolVersion: msg.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'echo', version: '1' } }
        : msg.method === 'tools/list'
          ? { tools: [{ name: 'shout', description: 'Upper-cases text.', inputSchema: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] } }] }
          : msg.method === 'tools/call'
            ? { content: [{ type: 'text', text: String(msg.params.arguments.text).toUpperCase() }] }
            : {};
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result }));
    });
  });
  return new Promise((resolve) => server.listen(0, '0.0.0.0', () => resolve({ server, port: (server.address() as AddressInfo).port, calls })));
}

describe('an HTTP MCP server through the egress proxy', () => {
  let h: Harness;
  let mcp: Awaited<ReturnType<typeof startHttpMcp>>;
  before(async () => {
    mcp = await startHttpMcp();
    h = await startHarness({
      template: {
        'runner.json': {
          network: { mode: 'allowlist', allow: [`host.docker.internal:${mcp.port}`] },
          mcpServers: { echo: { type: 'http', url: `http://host.docker.internal:${mcp.port}/mcp` } },
        },
      },
      rules: [rule('shout-it', toolUse('mcp__echo__shout', { text: 'hello' }), (ctx) => text(`got ${ctx.lastToolResult}`))],
    });
  });
  after(async () => {
    await h?.close();
    mcp?.server.close();
  });

  test('its tool is listed and called; the server sees the calls', async () => {
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'http-mcp', message: 'shout-it' } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body.tools, ['mcp__echo__shout']);
    assert.match(JSON.stringify(res.body.output), /HELLO/);
    assert.ok(mcp.calls.includes('tools/call'), mcp.calls.join(','));
  });
});
