/**
 * Seals a task's `env` (AES-256-GCM) before it is stored, so secrets never
 * rest in clear in the database; the key lives in DATA_DIR/secret.key (0600)
 * unless RUNNER_SECRET_KEY gives one. Sealed values are erased when the task ends.
 * Digests of what holds secrets (the idempotency request hash) are keyed with
 * a sub-key of the same key, so a stored digest cannot be tested offline
 * against guessed values.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** HKDF `info` of the digest sub-key: the sealing key itself never keys anything but AES-GCM. */
const DIGEST_KEY_INFO = 'claude-runner idempotency v1';

export class EnvSealer {
  private readonly key: Buffer;
  private readonly digestKey: Buffer;

  constructor(key: Buffer) {
    if (key.length !== 32) throw new Error('the sealing key must be 32 bytes');
    this.key = key;
    this.digestKey = this.subKey(DIGEST_KEY_INFO);
  }

  /** A key for another use, derived from the sealing key (HKDF-SHA256): the same on every node that shares it. */
  subKey(info: string): Buffer {
    return Buffer.from(hkdfSync('sha256', this.key, Buffer.alloc(0), info, 32));
  }

  /**
   * HMAC-SHA256 (hex) of a value that may hold secrets, under a sub-key
   * derived from the sealing key (HKDF-SHA256): equal values give equal
   * digests under one key; without the key, a digest tells nothing.
   */
  requestDigest(value: string): string {
    return createHmac('sha256', this.digestKey).update(value, 'utf8').digest('hex');
  }

  /** The key from RUNNER_SECRET_KEY (base64, 32 bytes), else DATA_DIR/secret.key, created on first use. */
  static fromDataDir(dataDir: string, explicitKey?: string): EnvSealer {
    if (explicitKey) return new EnvSealer(Buffer.from(explicitKey, 'base64'));
    const file = join(dataDir, 'secret.key');
    try {
      if (!existsSync(file)) writeFileSync(file, randomBytes(32).toString('base64'), { mode: 0o600, flag: 'wx' });
    } catch (error) {
      // Another node sharing DATA_DIR made it first: its key is the one.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    return new EnvSealer(Buffer.from(readFileSync(file, 'utf8').trim(), 'base64'));
  }

  /** Sealed for one task: `taskId` is bound in (GCM associated data), so a sealed env cannot be moved to another task's row. */
  seal(env: Record<string, string>, taskId: string): string | null {
    if (Object.keys(env).length === 0) return null;
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(Buffer.from(taskId, 'utf8'));
    const body = Buffer.concat([cipher.update(JSON.stringify(env), 'utf8'), cipher.final()]);
    return ['v1', iv.toString('base64'), body.toString('base64'), cipher.getAuthTag().toString('base64')].join(':');
  }

  unseal(sealed: string | null, taskId: string): Record<string, string> {
    if (!sealed) return {};
    const [version, iv, body, tag] = sealed.split(':');
    if (version !== 'v1' || !iv || !body || !tag) throw new Error('sealed env: unknown format');
    const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(iv, 'base64'));
    decipher.setAAD(Buffer.from(taskId, 'utf8'));
    decipher.setAuthTag(Buffer.from(tag, 'base64'));
    const text = Buffer.concat([decipher.update(Buffer.from(body, 'base64')), decipher.final()]).toString('utf8');
    return JSON.parse(text) as Record<string, string>;
  }
}
