/**
 * Which URL a task's webhook goes to: its own webhookUrl, checked at submit,
 * or its template's default, checked at start. Refusals are RunnerErrors
 * (WEBHOOK_NOT_CONFIGURED, WEBHOOK_TARGET_NOT_ALLOWED).
 */
import { RunnerError } from '../core/errors.ts';
import { checkWebhookTarget } from './address-policy.ts';

interface Templates {
  names(): string[];
  get(name: string): { webhook?: string | undefined };
}

export class WebhookTargets {
  private readonly configured: boolean;
  private readonly allowPrivate: boolean;
  private readonly templates: Templates;

  constructor(options: { configured: boolean; allowPrivate: boolean; templates: Templates }) {
    this.configured = options.configured;
    this.allowPrivate = options.allowPrivate;
    this.templates = options.templates;
  }

  /** Throws unless webhooks are configured and every address `url` resolves to may be called. */
  async check(url: string): Promise<void> {
    if (!this.configured) throw new RunnerError('WEBHOOK_NOT_CONFIGURED');
    const result = await checkWebhookTarget(url, this.allowPrivate);
    if (!result.allowed) {
      throw new RunnerError('WEBHOOK_TARGET_NOT_ALLOWED', `The webhook URL is not allowed: it ${result.reason.startsWith('is ') || result.reason.startsWith('must') ? '' : 'names a host that '}${result.reason}. WEBHOOK_ALLOW_PRIVATE=1 lets private addresses through.`);
    }
  }

  /** The template's default webhook, if it has one. */
  defaultFor(agent: string): string | undefined {
    try {
      return this.templates.get(agent).webhook;
    } catch {
      return undefined;
    }
  }

  /** At start: every template's default webhook must be usable, or the runner does not start. */
  async checkTemplates(): Promise<void> {
    for (const name of this.templates.names()) {
      const url = this.templates.get(name).webhook;
      if (!url) continue;
      try {
        await this.check(url);
      } catch (error) {
        const why = error instanceof RunnerError ? error.message : String(error);
        throw new Error(`Template "${name}" has a default webhook that cannot be used: ${why}`);
      }
    }
  }
}
