// The API key form: shown when the runner answers 401. The key is checked, then kept in this browser.
import { useState } from 'preact/hooks';
import { html } from './html.js';
import { keyRequired, saveKey, tryKey } from './api.js';
import { refresh } from './store.js';

export function KeyPrompt() {
  const [key, setKey] = useState('');
  const [error, setError] = useState(null);
  const [checking, setChecking] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    setChecking(true);
    setError(null);
    try {
      if (await tryKey(key.trim())) {
        saveKey(key.trim());
        keyRequired.value = false;
        void refresh();
      } else setError('This key was refused.');
    } catch (e) {
      setError(e.message);
    } finally {
      setChecking(false);
    }
  };
  return html`
    <div class="key-screen">
      <form class="key-card panel" onSubmit=${submit}>
        <div class="brand"><span class="logo">◆</span> Claude Runner</div>
        <p>This runner needs an API key. It is kept in this browser only (localStorage) and sent to this runner alone.</p>
        <label for="api-key">API key</label>
        <input id="api-key" name="apiKey" type="password" autocomplete="off" value=${key} onInput=${(e) => setKey(e.currentTarget.value)} autofocus />
        ${error ? html`<div class="error-line" role="alert">${error}</div>` : null}
        <button type="submit" class="btn primary" disabled=${checking || !key.trim()}>Use this key</button>
      </form>
    </div>`;
}
