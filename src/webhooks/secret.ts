/** The WEBHOOK_SECRET's format (Standard Webhooks: "whsec_" + base64 of the key), checked at start. */
const SECRET_PREFIX = 'whsec_';
const MIN_SECRET_BYTES = 24;

/** Why a WEBHOOK_SECRET is unusable, or null when it is fine. */
export function webhookSecretProblem(secret: string): string | null {
  if (!secret.startsWith(SECRET_PREFIX)) return `must start with "${SECRET_PREFIX}"`;
  const encoded = secret.slice(SECRET_PREFIX.length);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(encoded)) return `must be "${SECRET_PREFIX}" followed by base64`;
  const bytes = Buffer.from(encoded, 'base64').length;
  if (bytes < MIN_SECRET_BYTES) return `must encode at least ${MIN_SECRET_BYTES} bytes (it encodes ${bytes})`;
  return null;
}

/** Spec's recommended waits between attempts: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about a day in all). */
export const DEFAULT_RETRY_SCHEDULE_MS: readonly number[] = [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000];
