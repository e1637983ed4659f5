// The dashboard's entry: the header, then the sessions overview or one session's page (hash routes:
// #/ and #/session/<id>), or the key form while the runner wants a key.
import { render } from 'preact';
import { html } from './html.js';
import { keyRequired } from './api.js';
import { Header } from './header.js';
import { KeyPrompt } from './key-prompt.js';
import { SessionsList } from './sessions-list.js';
import { SessionPage } from './session-page.js';
import { route, startPolling } from './store.js';

function App() {
  if (keyRequired.value) return html`<${KeyPrompt} />`;
  const current = route.value;
  return html`
    <${Header} />
    <main class="main">
      ${current.name === 'session' ? html`<${SessionPage} key=${current.sessionId} sessionId=${current.sessionId} />` : html`<${SessionsList} />`}
    </main>`;
}

const root = document.getElementById('app');
// The boot text is not preact's: remove it, or render would keep it beside the app.
root.textContent = '';
render(html`<${App} />`, root);
startPolling();
