/**
 * The sandbox's only way out under the allowlist policy: an HTTP proxy
 * (absolute-form requests and CONNECT tunnels) reached through the session's
 * gateway socket. A destination passes only when it matches the running
 * task's allowlist and is not one of the runner's own ports. The sandbox has
 * no network interface and no DNS: names are resolved here, after the check.
 */
import { lookup } from 'node:dns/promises';
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Duplex } from 'node:stream';

export interface Destination {
  host: string;
  port: number;
}

/** host.docker.internal means this machine, as it does for Docker containers. */
const HOST_ALIASES: Record<string, string> = { 'host.docker.internal': '127.0.0.1' };

/**
 * Allowlist entries: "host", "host:port", "*.example.com", "*.example.com:8443".
 * Without a port an entry allows 80 and 443.
 */
export function isAllowed(destination: Destination, allow: readonly string[]): boolean {
  const host = destination.host.toLowerCase().replace(/\.$/, '');
  return allow.some((entry) => {
    const colon = entry.lastIndexOf(':');
    const pattern = (colon > 0 ? entry.slice(0, colon) : entry).toLowerCase();
    const ports = colon > 0 ? [Number(entry.slice(colon + 1))] : [80, 443];
    if (!ports.includes(destination.port)) return false;
    return pattern.startsWith('*.') ? host.endsWith(pattern.slice(1)) && host.length > pattern.length - 1 : host === pattern;
  });
}

export function parseAuthority(authority: string, defaultPort: number): Destination | null {
  const match = /^\[?([^\]]+?)\]?(?::(\d{1,5}))?$/.exec(authority);
  if (!match) return null;
  const port = match[2] ? Number(match[2]) : defaultPort;
  if (port < 1 || port > 65535) return null;
  return { host: match[1]!, port };
}

function localAddresses(): Set<string> {
  const addresses = new Set(['0.0.0.0', '::']);
  for (const list of Object.values(networkInterfaces())) for (const entry of list ?? []) addresses.add(entry.address);
  return addresses;
}

/**
 * Resolves the destination once, here, and returns the address to connect to;
 * the check and the connection use the same address, so a name that changes
 * its answer in between (DNS rebinding) cannot slip past.
 */
async function resolveAddress(host: string): Promise<string> {
  const target = HOST_ALIASES[host.toLowerCase()] ?? host;
  return (await lookup(target)).address;
}

export interface EgressPolicy {
  /** The allowlist of the session's running task, or null when no task runs (everything refused). */
  allowFor(sessionKey: string): readonly string[] | null;
  /** Ports of this machine that no sandbox may reach (the runner's API, its database). */
  deniedLocalPorts: readonly number[];
  log: { info(obj: object, msg?: string): void };
}

function isLocal(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.') || localAddresses().has(address);
}

type Decision = { address: string } | { refused: string };

async function decide(policy: EgressPolicy, sessionKey: string, destination: Destination | null): Promise<Decision> {
  if (!destination) return { refused: 'bad destination' };
  const allow = policy.allowFor(sessionKey);
  if (allow === null) return { refused: 'no task is running' };
  if (!isAllowed(destination, allow)) return { refused: 'not on the allowlist' };
  let address: string;
  try {
    address = await resolveAddress(destination.host);
  } catch {
    return { refused: 'name does not resolve' };
  }
  if (isLocal(address) && policy.deniedLocalPorts.includes(destination.port)) return { refused: 'a port of the runner itself' };
  return { address };
}

function refuse(policy: EgressPolicy, sessionKey: string, target: string, reason: string): void {
  policy.log.info({ sessionKey, target, reason }, 'egress refused');
}

/** Absolute-form request: GET http://host:port/path HTTP/1.1 */
export async function proxyHttp(policy: EgressPolicy, sessionKey: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let url: URL;
  try {
    url = new URL(req.url ?? '');
  } catch {
    res.writeHead(400).end('bad proxy request\n');
    return;
  }
  if (url.protocol !== 'http:') {
    res.writeHead(400).end('only http:// is proxied this way; use CONNECT for https\n');
    return;
  }
  const destination = parseAuthority(url.host, 80);
  const decision = await decide(policy, sessionKey, destination);
  if ('refused' in decision) {
    refuse(policy, sessionKey, url.host, decision.refused);
    res.writeHead(403, { 'content-type': 'text/plain' }).end(`claude-runner egress policy: ${url.host} refused (${decision.refused})\n`);
    return;
  }
  const headers = { ...req.headers };
  delete headers['proxy-authorization'];
  delete headers['proxy-connection'];
  const upstream = httpRequest({
    host: decision.address, port: destination!.port, method: req.method, path: `${url.pathname}${url.search}`, headers,
  }, (upstreamRes) => {
    res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
    upstreamRes.pipe(res);
  });
  upstream.on('error', (error) => {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
    res.end(`claude-runner egress: ${error.message}\n`);
  });
  req.pipe(upstream);
}

/** CONNECT host:port — a TCP tunnel (https). */
export async function proxyConnect(policy: EgressPolicy, sessionKey: string, req: IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
  const destination = parseAuthority(req.url ?? '', 443);
  const decision = await decide(policy, sessionKey, destination);
  if ('refused' in decision) {
    refuse(policy, sessionKey, req.url ?? '', decision.refused);
    client.end(`HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\n\r\nclaude-runner egress policy: ${req.url} refused (${decision.refused})\n`);
    return;
  }
  const upstream: Socket = connect(destination!.port, decision.address, () => {
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length > 0) upstream.write(head);
    upstream.pipe(client);
    client.pipe(upstream);
  });
  upstream.on('error', () => client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n'));
  client.on('error', () => upstream.destroy());
}
