/**
 * Egress refusals are told: the gateway's proxy refuses a sandbox's
 * connection under `allowlist` (not listed) and under `none` (tools are given
 * the proxy there too, so the refusal has a reason instead of a silent
 * failure), the tool sees the reason, the session's log gets an
 * `egress_refused {host, port, reason}` event with the running task's id, and
 * the metric counts it. The "outside world" is servers of this test on this
 * machine, reached as host.docker.internal.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { EgressRefusal } from '../../src/core/ports/model-gateway.ts';
import { SANDBOX_GATEWAY_URL } from '../../src/core/ports/model-gateway.ts';
import { SocketModelGateway } from '../../src/gateway/gateway.ts';
import { priceUsage } from '../../src/pricing/prices.ts';
import { bash, rule, text } from '../../src/scripted-model/index.ts';
import { Redactor } from '../../src/secrets/redactor.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { closedWithin, KEY, openTask, raw, type Rig, silent, startUpstream, tunnel, type Upstream } from './gateway-rig.ts';
import { lastToolResults, readSse } from './support.ts';

async function listen(hits: string[], name: string): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    res.end(`${name} says hi\n`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port };
}

describe('egress refusals at the gateway', () => {
  let up: Upstream;
  let rig: Rig;
  let target: { server: Server; port: number };
  const hits: string[] = [];
  const told: EgressRefusal[] = [];

  before(async () => {
    up = await startUpstream();
    target = await listen(hits, 'target');
    const dir = mkdtempSync('/tmp/cr-egt-');
    const gateway = new SocketModelGateway({
      upstream: { baseUrl: up.url, apiKey: KEY, oauthToken: undefined }, deniedLocalPorts: [], priceUsage, redactor: new Redactor(), logger: silent,
      observer: { egressRefused: (refusal) => told.push(refusal) },
    });
    await gateway.attachSession('s1', dir);
    rig = {
      gateway, dir, sock: join(dir, 'gateway.sock'),
      async close() {
        await gateway.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  });
  after(async () => {
    await rig?.close();
    await up?.close();
    target?.server.close();
  });

  const proxied = async (url: string): Promise<{ status: number; body: string }> => {
    const socket = await raw(rig);
    let answer = '';
    socket.on('data', (chunk: Buffer) => { answer += chunk.toString(); });
    socket.write(`GET ${url} HTTP/1.1\r\nHost: ${new URL(url).host}\r\nProxy-Authorization: Basic c2VjcmV0OnBhc3M=\r\nConnection: close\r\n\r\n`);
    await closedWithin(socket, 3000);
    socket.destroy();
    return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(answer)?.[1] ?? 0), body: answer };
  };

  test('tools get the proxy under none and allowlist, not under open', async () => {
    for (const [mode, proxied] of [['none', true], ['allowlist', true], ['open', false]] as const) {
      const { sandboxEnv } = await rig.gateway.openTask({
        taskId: `task_env_${mode}`, sessionKey: 's1', network: { mode, allow: [] }, budgetUsd: undefined, maxModelCalls: 1,
        onModelCall: () => undefined, onLimitReached: () => undefined,
      });
      await rig.gateway.closeTask(`task_env_${mode}`);
      assert.equal(sandboxEnv.HTTPS_PROXY, proxied ? SANDBOX_GATEWAY_URL : undefined, mode);
      assert.equal(sandboxEnv.http_proxy, proxied ? SANDBOX_GATEWAY_URL : undefined, mode);
    }
  });

  test('under none every destination is refused with its reason, told with the running task; with no task, told without one', async () => {
    told.length = 0;
    const task = await openTask(rig, { network: { mode: 'none', allow: [`127.0.0.1:${target.port}`] } });
    const plain = await proxied(`http://127.0.0.1:${target.port}/a`);
    assert.equal(plain.status, 403, plain.body);
    assert.match(plain.body, new RegExp(`127\\.0\\.0\\.1:${target.port} refused \\(the network policy is none\\)`));
    // CONNECT with credentials in the authority: the host is told without them.
    const tunnelled = await tunnel(rig, `someone:hunter2@127.0.0.1:${target.port}`);
    tunnelled.socket.destroy();
    assert.equal(tunnelled.status, 403, tunnelled.text);
    await rig.gateway.closeTask(task.taskId);
    const late = await proxied(`http://127.0.0.1:${target.port}/b`);
    assert.equal(late.status, 403);
    assert.deepEqual(hits, []);
    assert.deepEqual(told, [
      { sessionKey: 's1', taskId: task.taskId, nth: 1, host: '127.0.0.1', port: target.port, reason: 'the network policy is none' },
      { sessionKey: 's1', taskId: task.taskId, nth: 2, host: '127.0.0.1', port: target.port, reason: 'the network policy is none' },
      { sessionKey: 's1', taskId: null, nth: 1, host: '127.0.0.1', port: target.port, reason: 'no task is running' },
    ]);
    assert.doesNotMatch(JSON.stringify(told), /hunter2|c2VjcmV0|someone/);
  });

  test('under allowlist, an unlisted destination is told with "not on the allowlist"; a listed one passes untold', async () => {
    told.length = 0;
    const task = await openTask(rig, { network: { mode: 'allowlist', allow: [`127.0.0.1:${target.port}`] } });
    const unlistedPort = Number(new URL(up.url).port);
    try {
      assert.equal((await proxied(`http://127.0.0.1:${target.port}/listed`)).status, 200);
      assert.equal((await proxied(`http://127.0.0.1:${unlistedPort}/`)).status, 403);
      const bad = await tunnel(rig, 'bad-host:99999');
      bad.socket.destroy();
      assert.equal(bad.status, 403);
    } finally {
      await rig.gateway.closeTask(task.taskId);
    }
    assert.deepEqual(hits, ['GET /listed']);
    assert.deepEqual(told.map(({ taskId, port, reason }) => ({ taskId, port, reason })), [
      { taskId: task.taskId, port: unlistedPort, reason: 'not on the allowlist' },
      { taskId: task.taskId, port: 0, reason: 'bad destination' },
    ]);
  });
});

/** One curl, reported as "<label> code=<http> connect=<CONNECT status> exit=<curl exit>" plus the body. */
function probe(label: string, args: string): string {
  return `printf '%s ' '${label}'; curl -s -m 5 -w ' code=%{http_code} connect=%{http_connect}' ${args} 2>&1; echo " exit=$?"`;
}

/** Refused connections of the looping tool: more than the runner stores as events of one task (100). */
const LOOP = 110;

interface Frame { type: string; seq: number; taskId: string | null; ts: string; [field: string]: unknown }

describe('egress refusals in a real sandbox: the tool, the event, the metric', () => {
  let h: Harness;
  let listed: { server: Server; port: number };
  let unlisted: { server: Server; port: number };
  const listedHits: string[] = [];
  const unlistedHits: string[] = [];

  before(async () => {
    listed = await listen(listedHits, 'listed');
    unlisted = await listen(unlistedHits, 'unlisted');
    const viaProxy = `--noproxy '' -x ${SANDBOX_GATEWAY_URL}`;
    h = await startHarness({
      // A template without runner.json gets the default policy: none here.
      env: { NETWORK_POLICY: 'none' },
      templates: {
        listed: { 'runner.json': { network: { mode: 'allowlist', allow: [`host.docker.internal:${listed.port}`] } } },
        plain: {},
      },
      rules: [
        rule('egress-allowlist-e5', bash([
          probe('listed', `http://host.docker.internal:${listed.port}/ok`),
          probe('unlisted', `http://host.docker.internal:${unlisted.port}/plain`),
          probe('unlisted-tunnel', `-p ${viaProxy} -U proxyuser:proxy-pass-s3cr3t http://host.docker.internal:${unlisted.port}/tunnel`),
        ].join('; ')), text('probed allowlist')),
        rule('egress-none-e5', bash(probe('outside', `http://host.docker.internal:${unlisted.port}/none`)), text('probed none')),
        rule('egress-loop-e5', bash(`for i in $(seq 1 ${LOOP}); do curl -s -o /dev/null http://host.docker.internal:${unlisted.port}/loop; done; echo looped`), text('looped')),
      ],
    });
  });
  after(async () => {
    await h?.close();
    listed?.server.close();
    unlisted?.server.close();
  });

  /** Runs the task and returns its id and its events, as its SSE stream gives them. */
  const run = async (sessionId: string, agent: string, message: string): Promise<{ taskId: string; frames: Frame[]; sse: string }> => {
    const res = await h.api('/task', { method: 'POST', json: { sessionId, agent, message } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const { status, text: sse } = await readSse(`${h.url}/tasks/${res.body.taskId}/events`, {}, (t) => /"type":"task_(complete|error)"/.test(t));
    assert.equal(status, 200);
    const frames = [...sse.matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1]!) as Frame).filter((f) => typeof f.seq === 'number');
    return { taskId: res.body.taskId, frames, sse };
  };

  /** The egress_refused events, each between the Bash call's tool_start and its tool_end. */
  const refusals = (frames: Frame[]): Frame[] => {
    const found = frames.filter((f) => f.type === 'egress_refused');
    const start = frames.findIndex((f) => f.type === 'tool_start');
    const end = frames.findIndex((f) => f.type === 'tool_end');
    for (const frame of found) {
      const at = frames.indexOf(frame);
      assert.ok(start >= 0 && start < at && at < end, `egress_refused (seq ${frame.seq}) during the tool call`);
    }
    return found;
  };

  test('allowlist: a listed host is reached; an unlisted one, plain and tunnelled, is refused, told to the tool and as events of the task', async () => {
    const { taskId, frames, sse } = await run('egress-allow', 'listed', 'egress-allowlist-e5');
    const results = lastToolResults(h.model, 'egress-allowlist-e5');
    assert.match(results, /^listed listed says hi\n code=200/m);
    assert.match(results, new RegExp(`^unlisted claude-runner egress policy: host\\.docker\\.internal:${unlisted.port} refused \\(not on the allowlist\\)`, 'm'));
    assert.match(results, /^unlisted-tunnel .*connect=403/m);
    assert.deepEqual(listedHits, ['GET /ok']);
    assert.deepEqual(unlistedHits, []);
    const found = refusals(frames);
    assert.deepEqual(found.map(({ type, taskId: id, host, port, reason }) => ({ type, taskId: id, host, port, reason })), [
      { type: 'egress_refused', taskId, host: 'host.docker.internal', port: unlisted.port, reason: 'not on the allowlist' },
      { type: 'egress_refused', taskId, host: 'host.docker.internal', port: unlisted.port, reason: 'not on the allowlist' },
    ]);
    for (const frame of found) assert.deepEqual(Object.keys(frame).sort(), ['host', 'port', 'reason', 'seq', 'taskId', 'ts', 'type']);
    // The proxy credential the tool sent (Proxy-Authorization) is in no refusal (its own command line shows it, as the agent wrote it).
    assert.match(sse, /proxy-pass-s3cr3t/);
    assert.doesNotMatch(JSON.stringify(found), /proxy-pass-s3cr3t|cHJveHl1c2Vy|proxyuser/);
  });

  test('none (a template without runner.json): the tool is refused with "the network policy is none", and the session hears it', async () => {
    const { taskId, frames } = await run('egress-none', 'plain', 'egress-none-e5');
    const results = lastToolResults(h.model, 'egress-none-e5');
    assert.match(results, new RegExp(`^outside claude-runner egress policy: host\\.docker\\.internal:${unlisted.port} refused \\(the network policy is none\\)\\n code=403`, 'm'));
    assert.deepEqual(unlistedHits, []);
    const found = refusals(frames);
    assert.deepEqual(found.map(({ taskId: id, host, port, reason }) => ({ taskId: id, host, port, reason })), [
      { taskId, host: 'host.docker.internal', port: unlisted.port, reason: 'the network policy is none' },
    ]);
    // The session stream (from the start of its log) has the same event.
    const session = await readSse(`${h.url}/session/egress-none/events?after=0`, {}, (t) => t.includes('"type":"task_complete"'));
    assert.match(session.text, new RegExp(`"type":"egress_refused","seq":\\d+,"taskId":"${taskId}"`));
  });

  test('a tool that retries in a loop: the first 100 refusals are events of the task, the rest only counted', async () => {
    const { taskId, frames } = await run('egress-loop', 'plain', 'egress-loop-e5');
    const found = refusals(frames);
    assert.equal(found.length, 100);
    assert.ok(found.every((f) => f.taskId === taskId && f.reason === 'the network policy is none'));
    assert.deepEqual(unlistedHits, []);
  });

  test('the metric counts every refusal by reason', async () => {
    const body = (await h.api('/metrics')).text;
    assert.match(body, /^claude_runner_egress_refused_total\{reason="not on the allowlist"\} 2$/m);
    assert.match(body, new RegExp(`^claude_runner_egress_refused_total\\{reason="the network policy is none"\\} ${1 + LOOP}$`, 'm'));
  });
});
