// Small pieces the views share: state badges, buttons that confirm, empty states.
import { useState } from 'preact/hooks';
import { html } from './html.js';

const BADGE_TONE = {
  idle: 'muted', queued: 'warn', busy: 'live', running: 'live', awaiting_input: 'ask', succeeded: 'ok', failed: 'bad',
  aborted: 'warn', interrupted: 'bad', timed_out: 'bad', budget_exceeded: 'bad',
};

export function Badge({ value }) {
  return html`<span class=${`badge tone-${BADGE_TONE[value] ?? 'muted'}`} data-state=${value}>${value.replace('_', ' ')}</span>`;
}

/** A button that runs an async action, disabled meanwhile; with `confirm`, asks first. */
export function ActionButton({ label, onClick, confirm: question, tone = '', disabled = false, title }) {
  const [busy, setBusy] = useState(false);
  const run = async () => {
    if (question && !window.confirm(question)) return;
    setBusy(true);
    try {
      await onClick();
    } finally {
      setBusy(false);
    }
  };
  return html`<button type="button" class=${`btn ${tone}`} disabled=${busy || disabled} onClick=${run} title=${title}>${label}</button>`;
}

export function Empty({ children }) {
  return html`<div class="empty">${children}</div>`;
}

export function ErrorLine({ error }) {
  if (!error) return null;
  return html`<div class="error-line" role="alert">${error}</div>`;
}
