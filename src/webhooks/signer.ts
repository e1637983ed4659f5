/**
 * Webhooks: signing and checking the WEBHOOK_SECRET, per the Standard
 * Webhooks specification (https://www.standardwebhooks.com), with the
 * `standardwebhooks` library so receivers verify with the same algorithm.
 * Owns the headers of one delivery attempt; knows nothing of the store,
 * the queue or HTTP routes.
 */
import { randomUUID } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { webhookSecretProblem } from './secret.ts';

export { webhookSecretProblem };

/** A webhook-id: unique per delivery, the same on each of its retries. */
export function newWebhookId(): string {
  return `msg_${randomUUID().replaceAll('-', '')}`;
}

export interface SignedHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

export class WebhookSigner {
  private readonly webhook: Webhook;

  constructor(secret: string) {
    const problem = webhookSecretProblem(secret);
    if (problem) throw new Error(`WEBHOOK_SECRET ${problem}`);
    this.webhook = new Webhook(secret);
  }

  /** Headers for one attempt: the timestamp is this attempt's, the id the delivery's. */
  headers(webhookId: string, body: string, at: Date = new Date()): SignedHeaders {
    return {
      'webhook-id': webhookId,
      'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
      'webhook-signature': this.webhook.sign(webhookId, at, body),
    };
  }
}
