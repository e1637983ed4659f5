/**
 * The gateway's egress proxy: internal and private addresses refused, listed
 * names resolved once, the runner's own ports never reachable.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { allowedBy, isInternalAddress } from '../../src/gateway/egress-proxy.ts';
import { type Upstream, startUpstream, type Rig, startGateway, openTask, raw, closedWithin, tunnel } from './gateway-rig.ts';

describe('gateway: egress to private and internal addresses', () => {
  let up: Upstream;
  let rig: Rig;
  let target: Server;
  let port: number;
  const hosts: string[] = [];
  before(async () => {
    up = await startUpstream();
    target = createServer((req, res) => { hosts.push(req.headers.host ?? ''); res.end('local service\n'); });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    port = (target.address() as { port: number }).port;
    rig = await startGateway(up, { deniedLocalPorts: [up.url ? Number(new URL(up.url).port) : 0] });
  });
  after(async () => {
    await rig?.close();
    await up?.close();
    target?.closeAllConnections();
    target?.close();
  });

  const proxied = async (url: string, host: string): Promise<{ status: number; body: string }> => {
    const socket = await raw(rig);
    let text = '';
    socket.on('data', (chunk: Buffer) => { text += chunk.toString(); });
    socket.write(`GET ${url} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    await closedWithin(socket, 3000);
    socket.destroy();
    return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0), body: text };
  };

  test('classifies addresses: loopback, private, link-local, ULA, CGNAT, unspecified, multicast are internal', () => {
    for (const address of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '172.31.255.254', '192.168.1.1', '169.254.169.254', '100.64.0.1', '100.127.255.254',
      '0.0.0.0', '224.0.0.1', '255.255.255.255', '::', '::1', 'fe80::1', 'fd00::1', 'fc00::1', 'ff02::1', '::ffff:169.254.169.254', '::ffff:10.0.0.1',
      '::ffff:127.0.0.1', 'fe80::', 'fc00::', '172.16.5.4', '100.64.12.34']) {
      assert.equal(isInternalAddress(address), true, address);
    }
    for (const address of ['1.1.1.1', '93.184.216.34', '172.32.0.1', '100.128.0.1', '192.169.0.1', '2606:4700:4700::1111', '2606:4700::1']) {
      assert.equal(isInternalAddress(address), false, address);
    }
    assert.deepEqual(allowedBy({ host: 'fd00::1', port: 443 }, ['[fd00::1]', '[fd00::2]:443']), ['fd00::1']);
    assert.deepEqual(allowedBy({ host: 'fd00::1', port: 8443 }, ['[fd00::1]:8443']), ['fd00::1']);
  });

  test('addresses that embed an IPv4 address, benchmarking, reserved and non-global IPv6 are internal too; no text that is not an IP passes', () => {
    for (const address of [
      // NAT64 (RFC 6052, 8215): a NAT64 gateway would lead to the embedded 10.0.0.1 / 127.0.0.1.
      '64:ff9b::a00:1', '64:ff9b::7f00:1', '64:ff9b:1::a00:1',
      // 6to4 (2002::/16) and Teredo (2001::/32), IPv4-mapped to a public address, SIIT (::ffff:0:a.b.c.d).
      '2002:7f00:1::1', '2002:a00:1::', '2001:0:4136:e378:8000:63bf:3fff:fdd2', '::ffff:8.8.8.8', '::ffff:0:a00:1',
      // IPv4-compatible (deprecated) and other IPv6 outside 2000::/3; site-local; discard-only.
      '::a00:1', '::7f00:1', '100::1', 'fec0::1', '4000::1',
      // Benchmarking 198.18.0.0/15, documentation, reserved 240/4, 192.0.0.0/24.
      '198.18.0.1', '198.19.255.254', '192.0.2.1', '203.0.113.9', '240.0.0.1', '192.0.0.8', '2001:db8::1',
      // Not an address: refused rather than guessed at.
      'localhost', '', '127.1', '0x7f000001', '2130706433',
    ]) {
      assert.equal(isInternalAddress(address), true, address);
    }
    // Just outside those ranges: public.
    for (const address of ['198.17.255.254', '198.20.0.1', '8.8.8.8', '2003::1', '2a00:1450:4001:80b::200e']) {
      assert.equal(isInternalAddress(address), false, address);
    }
  });

  test('a listed name that resolves to loopback is refused, plain and CONNECT; a listed IP literal or host.docker.internal is reached', async () => {
    const task = await openTask(rig, { network: { mode: 'allowlist', allow: [`localhost:${port}`, `127.0.0.1:${port}`, `host.docker.internal:${port}`] } });
    try {
      const byName = await proxied(`http://localhost:${port}/`, `localhost:${port}`);
      assert.equal(byName.status, 403, byName.body);
      assert.match(byName.body, /private or internal address/);
      const tunnelByName = await tunnel(rig, `localhost:${port}`);
      tunnelByName.socket.destroy();
      assert.equal(tunnelByName.status, 403, tunnelByName.text);
      assert.deepEqual(hosts, []);
      // The Host header sent on is the URL's host, whatever the sandbox wrote.
      const byIp = await proxied(`http://127.0.0.1:${port}/`, 'metadata.google.internal');
      assert.equal(byIp.status, 200, byIp.body);
      assert.deepEqual(hosts, [`127.0.0.1:${port}`]);
      const byAlias = await proxied(`http://host.docker.internal:${port}/`, `host.docker.internal:${port}`);
      assert.equal(byAlias.status, 200, byAlias.body);
      assert.equal(hosts.at(-1), `host.docker.internal:${port}`);
    } finally {
      await rig.gateway.closeTask(task.taskId);
    }
  });

  test("the runner's own ports stay refused, even listed by IP", async () => {
    const denied = Number(new URL(up.url).port);
    const task = await openTask(rig, { network: { mode: 'allowlist', allow: [`127.0.0.1:${denied}`] } });
    try {
      const answer = await proxied(`http://127.0.0.1:${denied}/`, `127.0.0.1:${denied}`);
      assert.equal(answer.status, 403);
      assert.match(answer.body, /a port of the runner itself/);
    } finally {
      await rig.gateway.closeTask(task.taskId);
    }
  });
});
