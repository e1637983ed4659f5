/**
 * The sandbox's only way out under the allowlist policy: an HTTP proxy
 * (absolute-form requests and CONNECT tunnels) reached through the session's
 * gateway socket. Under the none policy the sandbox is given the proxy too,
 * and every destination is refused: a tool's connection then fails with a
 * reason (and the runner is told, see EgressPolicy.refused) instead of
 * failing silently. A destination passes only when it matches the running
 * task's allowlist, is not one of the runner's own ports, and does not resolve
 * to a loopback, private, link-local, CGNAT or other internal address (unless
 * the entry names that IP, or host.docker.internal, on purpose). The sandbox
 * has no network interface and no DNS: names are resolved here, after the check.
 */
import { lookup } from 'node:dns/promises';
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, isIP, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Duplex } from 'node:stream';
import ipaddr from 'ipaddr.js';
import type { NetworkMode } from '../core/ports/sandbox.ts';

export interface Destination {
  host: string;
  port: number;
}

/** host.docker.internal means this machine, as it does for Docker containers. */
const HOST_ALIASES: Record<string, string> = { 'host.docker.internal': '127.0.0.1' };

/** Entries that name a host on purpose: a listed IP literal, or this machine by its Docker name. */
function namesHostOnPurpose(pattern: string): boolean {
  return isIP(pattern) !== 0 || Object.hasOwn(HOST_ALIASES, pattern);
}

/** "host", "host:port", "[v6]", "[v6]:port", a bare IPv6 literal; without a port, 80 and 443. */
function parseEntry(entry: string): { pattern: string; ports: number[] } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
  if (bracketed) return { pattern: bracketed[1]!.toLowerCase(), ports: bracketed[2] ? [Number(bracketed[2])] : [80, 443] };
  const colon = entry.lastIndexOf(':');
  if (colon <= 0 || isIP(entry) === 6) return { pattern: entry.toLowerCase(), ports: [80, 443] };
  return { pattern: entry.slice(0, colon).toLowerCase(), ports: [Number(entry.slice(colon + 1))] };
}

/** The allowlist patterns that let the destination pass (empty: refused). */
export function allowedBy(destination: Destination, allow: readonly string[]): string[] {
  const host = destination.host.toLowerCase().replace(/\.$/, '');
  return allow.map(parseEntry).filter(({ pattern, ports }) => {
    if (!ports.includes(destination.port)) return false;
    return pattern.startsWith('*.') ? host.endsWith(pattern.slice(1)) && host.length > pattern.length - 1 : host === pattern;
  }).map(({ pattern }) => pattern);
}

/**
 * Allowlist entries: "host", "host:port", "*.example.com", "*.example.com:8443".
 * Without a port an entry allows 80 and 443.
 */
export function isAllowed(destination: Destination, allow: readonly string[]): boolean {
  return allowedBy(destination, allow).length > 0;
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
 * IPv6 ranges ipaddr.js calls unicast that still lead inward: 2000::/3 is all
 * of the global unicast space, so what lies outside it (::/96, IPv4-compatible
 * "::10.0.0.1"; unassigned space) is refused too.
 */
const GLOBAL_UNICAST_V6 = ipaddr.parseCIDR('2000::/3');

/**
 * Addresses no listed name may lead to: anything ipaddr.js does not class as
 * plain unicast (loopback, private, link-local, unique-local, CGNAT,
 * unspecified, broadcast, multicast, reserved, benchmarking 198.18.0.0/15,
 * cloud metadata 169.254.169.254, ...), including IPv6 forms that embed an
 * IPv4 address a gateway would lead to (IPv4-mapped ::ffff:0:0/96, 6to4
 * 2002::/16, NAT64 64:ff9b::/96 and 64:ff9b:1::/48, Teredo 2001::/32); IPv6
 * outside 2000::/3; a text that is no IP; or an address of this machine.
 */
export function isInternalAddress(address: string): boolean {
  if (isIP(address) === 0) return true;
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    parsed = ipaddr.parse(address);
  } catch {
    return true;
  }
  if (parsed.range() !== 'unicast') return true;
  if (parsed.kind() === 'ipv6' && !parsed.match(GLOBAL_UNICAST_V6)) return true;
  return localAddresses().has(address);
}

/**
 * Resolves the destination once, here, and returns the address to connect
 * to: the address checked is the address connected to, so a name cannot pass
 * the check with one answer and connect with another. It does not make a
 * listed name trustworthy: whatever public address a listed name resolves to
 * is reached (internal ones are refused by the caller), and a plain-http
 * request is sent there with the URL's host as its Host header.
 */
async function resolveAddress(host: string): Promise<string> {
  const target = HOST_ALIASES[host.toLowerCase()] ?? host;
  return (await lookup(target)).address;
}

export interface EgressPolicy {
  /** The network policy of the session's running task, or null when no task runs (everything refused). */
  policyFor(sessionKey: string): { mode: NetworkMode; allow: readonly string[] } | null;
  /** Ports of this machine that no sandbox may reach (the runner's API), whatever the allowlist says. */
  deniedLocalPorts: readonly number[];
  /** A connection was refused: where to (as the sandbox asked, without credentials) and why. */
  refused(sessionKey: string, destination: Destination, reason: string): void;
}

/** Why a destination is refused: short, for people (the sandbox's tools, the session's events, metrics). */
export const REFUSAL_REASONS = {
  badDestination: 'bad destination',
  noTask: 'no task is running',
  policyNone: 'the network policy is none',
  notListed: 'not on the allowlist',
  noName: 'name does not resolve',
  runnerPort: 'a port of the runner itself',
  internal: 'resolves to a private or internal address',
} as const;

function isLocal(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.') || localAddresses().has(address);
}

type Decision = { address: string; port: number } | { refused: string };

async function decide(policy: EgressPolicy, sessionKey: string, destination: Destination | null): Promise<Decision> {
  if (!destination) return { refused: REFUSAL_REASONS.badDestination };
  const network = policy.policyFor(sessionKey);
  if (network === null) return { refused: REFUSAL_REASONS.noTask };
  if (network.mode === 'none') return { refused: REFUSAL_REASONS.policyNone };
  const entries = allowedBy(destination, network.allow);
  if (entries.length === 0) return { refused: REFUSAL_REASONS.notListed };
  let address: string;
  try {
    address = await resolveAddress(destination.host);
  } catch {
    return { refused: REFUSAL_REASONS.noName };
  }
  if (isLocal(address) && policy.deniedLocalPorts.includes(destination.port)) return { refused: REFUSAL_REASONS.runnerPort };
  if (isInternalAddress(address) && !entries.some(namesHostOnPurpose)) return { refused: REFUSAL_REASONS.internal };
  return { address, port: destination.port };
}

/** The longest host told in a refusal (a DNS name is at most 253 characters). */
const MAX_TOLD_HOST = 253;

/** What the sandbox asked for, as told: never userinfo (user:password@), never unbounded. */
function told(target: string, destination: Destination | null): Destination {
  return { host: (destination?.host ?? target).replace(/^.*@/, '').slice(0, MAX_TOLD_HOST), port: destination?.port ?? 0 };
}

function refuse(policy: EgressPolicy, sessionKey: string, destination: Destination, reason: string): void {
  policy.refused(sessionKey, destination, reason);
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
  let clientGone = false;
  res.once('close', () => { clientGone = true; });
  const destination = parseAuthority(url.host, 80);
  const decision = await decide(policy, sessionKey, destination);
  if ('refused' in decision) {
    refuse(policy, sessionKey, told(url.host, destination), decision.refused);
    res.writeHead(403, { 'content-type': 'text/plain' }).end(`claude-runner egress policy: ${url.host} refused (${decision.refused})\n`);
    return;
  }
  if (clientGone) return;
  const headers = { ...req.headers };
  delete headers['proxy-authorization'];
  delete headers['proxy-connection'];
  // The host that was checked, not whatever Host the sandbox wrote.
  headers.host = url.host;
  const upstream = httpRequest({
    host: decision.address, port: decision.port, method: req.method, path: `${url.pathname}${url.search}`, headers,
  }, (upstreamRes) => {
    res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
    upstreamRes.pipe(res);
  });
  upstream.on('error', (error) => {
    if (res.headersSent || clientGone) return void res.destroy();
    res.writeHead(502, { 'content-type': 'text/plain' }).end(`claude-runner egress: ${error.message}\n`);
  });
  // A client that leaves (or is done) takes its upstream request with it.
  res.once('close', () => upstream.destroy());
  req.pipe(upstream);
}

/**
 * CONNECT host:port — a TCP tunnel (https). The caller has given `client` an
 * error listener (Node removes its own when it hands the socket over).
 */
export async function proxyConnect(policy: EgressPolicy, sessionKey: string, req: IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
  const destination = parseAuthority(req.url ?? '', 443);
  const decision = await decide(policy, sessionKey, destination);
  if ('refused' in decision) {
    refuse(policy, sessionKey, told(req.url ?? '', destination), decision.refused);
    client.end(`HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\n\r\nclaude-runner egress policy: ${req.url} refused (${decision.refused})\n`);
    return;
  }
  if (client.destroyed) return;
  let established = false;
  // noDelay: a tunnel passes small writes (TLS handshakes) on at once, not after a delayed ACK (Nagle).
  const upstream: Socket = connect({ port: decision.port, host: decision.address, noDelay: true }, () => {
    established = true;
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length > 0) upstream.write(head);
    upstream.pipe(client);
    client.pipe(upstream);
  });
  upstream.on('error', () => {
    if (established) client.destroy();
    else client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
  });
  // A client that goes takes its upstream with it (a half-open upstream would otherwise outlive it).
  client.once('close', () => upstream.destroy());
}
