/**
 * The process logger (pino, JSON lines). Every line passes through the
 * redactor, and credential-bearing headers are dropped by path, so a secret
 * cannot reach the log even when a caller logs a whole object.
 */
import { pino, type Logger } from 'pino';
import type { Redactor } from './secrets/redactor.ts';

export type { Logger };

export function createLogger(level: string, redactor: Redactor): Logger {
  return pino({
    level,
    base: { service: 'claude-runner' },
    redact: {
      paths: ['req.headers.authorization', 'req.headers["x-api-key"]', 'headers.authorization', 'headers["x-api-key"]', 'env', '*.env'],
      censor: '[REDACTED]',
    },
    formatters: {
      log: (object) => redactor.redactDeep(object),
    },
    hooks: {
      logMethod(args, method) {
        method.apply(this, args.map((arg) => (typeof arg === 'string' ? redactor.redact(arg) : arg)) as Parameters<typeof method>);
      },
    },
  });
}
