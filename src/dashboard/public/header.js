// The top bar: the runner's figures at a glance (the tenant's total cost from its sessions; running tasks,
// live agents and the engine's state from /health) and the key menu.
import { html } from './html.js';
import { apiKey, forgetKey } from './api.js';
import { money } from './format.js';
import { health, totals } from './store.js';

function Stat({ label, value, tone = '', name }) {
  return html`<div class=${`stat ${tone}`} data-stat=${name}><div class="stat-value">${value}</div><div class="stat-label">${label}</div></div>`;
}

export function Header() {
  const report = health.value;
  const sum = totals.value;
  const engine = report ? (report.docker === 'ok' ? 'ok' : report.docker) : '…';
  return html`
    <header class="topbar">
      <a class="brand" href="#/"><span class="logo">◆</span> Claude Runner</a>
      <div class="stats">
        <${Stat} name="cost" label="total cost" value=${money(sum.cost)} />
        <${Stat} name="running" label="running tasks" value=${report?.runningTasks ?? '—'} tone=${report?.runningTasks ? 'live' : ''} />
        <${Stat} name="queued" label="queued" value=${sum.queued} />
        <${Stat} name="agents" label="live agents" value=${report?.liveAgents ?? '—'} />
        <${Stat} name="containers" label="containers" value=${report?.runningSandboxes ?? '—'} />
        <${Stat} name="sessions" label="sessions" value=${sum.sessions} />
        <${Stat} name="engine" label="docker" value=${engine} tone=${engine === 'ok' ? 'ok' : report ? 'bad' : ''} />
      </div>
      <div class="topbar-end">
        ${report && !report.accepting ? html`<span class="badge tone-bad">not accepting</span>` : null}
        ${apiKey.value ? html`<button type="button" class="btn small" onClick=${forgetKey} title="Remove the API key from this browser">Forget key</button>` : null}
      </div>
    </header>`;
}
