/**
 * Which webhook targets the runner may call: absolute http(s) URLs whose
 * every resolved address is public, unless WEBHOOK_ALLOW_PRIVATE is set.
 * Reuses the egress proxy's classification of internal addresses so the two
 * refuse the same ranges. Returns the checked addresses so the delivery can
 * connect to exactly those (no DNS rebinding between check and connect).
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { isInternalAddress } from '../gateway/egress-proxy.ts';

export type TargetCheck =
  | { allowed: true; addresses: { address: string; family: number }[] }
  | { allowed: false; reason: string };

const METADATA_NAMES = new Set(['metadata.google.internal', 'metadata']);

export async function checkWebhookTarget(url: string, allowPrivate: boolean): Promise<TargetCheck> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { allowed: false, reason: 'is not an absolute URL' };
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return { allowed: false, reason: 'must use http or https' };
  if (parsed.username || parsed.password) return { allowed: false, reason: 'must not carry credentials' };
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (!allowPrivate && METADATA_NAMES.has(host)) return { allowed: false, reason: `${host} is a cloud metadata service` };
  let addresses: { address: string; family: number }[];
  if (isIP(host) !== 0) addresses = [{ address: host, family: isIP(host) }];
  else {
    try {
      addresses = await lookup(host, { all: true });
    } catch {
      return { allowed: false, reason: `${host} does not resolve` };
    }
  }
  if (addresses.length === 0) return { allowed: false, reason: `${host} does not resolve` };
  if (!allowPrivate) {
    const internal = addresses.find((entry) => isInternalAddress(entry.address));
    if (internal) return { allowed: false, reason: `${host} resolves to ${internal.address}, a private or internal address` };
  }
  return { allowed: true, addresses };
}
