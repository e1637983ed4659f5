// The sessions overview: every session of the caller's tenant with its state, queue, turns, cost and last
// activity (refreshed every ~2 s), and a form that starts a task in a new or existing session.
import { useState } from 'preact/hooks';
import { api } from './api.js';
import { html } from './html.js';
import { Badge, Empty, ErrorLine } from './ui.js';
import { money, relativeTime } from './format.js';
import { health, navigate, now, refresh, sessionHref, sessions, sessionsError, sessionState } from './store.js';

function NewTask() {
  const [sessionId, setSessionId] = useState('');
  const [message, setMessage] = useState('');
  const [agent, setAgent] = useState('');
  const [error, setError] = useState(null);
  const agents = health.value?.agents ?? [];
  const submit = async (event) => {
    event.preventDefault();
    setError(null);
    try {
      const body = { sessionId: sessionId.trim(), message, wait: false, ...(agent ? { agent } : {}) };
      await api('task', { method: 'POST', json: body });
      void refresh();
      navigate(sessionHref(body.sessionId));
    } catch (e) {
      setError(`${e.code}: ${e.message}`);
    }
  };
  return html`
    <form class="new-task" onSubmit=${submit}>
      <input name="sessionId" placeholder="session id (new or existing)" value=${sessionId} onInput=${(e) => setSessionId(e.currentTarget.value)} required />
      ${agents.length > 1 ? html`
        <select name="agent" value=${agent} onChange=${(e) => setAgent(e.currentTarget.value)}>
          <option value="">agent…</option>
          ${agents.map((name) => html`<option value=${name}>${name}</option>`)}
        </select>` : null}
      <input name="message" class="grow" placeholder="message" value=${message} onInput=${(e) => setMessage(e.currentTarget.value)} required />
      <button type="submit" class="btn primary" disabled=${!sessionId.trim() || !message.trim()}>Start task</button>
      <${ErrorLine} error=${error} />
    </form>`;
}

function SessionRow({ session, at }) {
  const href = sessionHref(session.sessionId);
  return html`
    <tr class="session-row" data-session-id=${session.sessionId} onClick=${(e) => e.target.tagName !== 'A' && navigate(href)}>
      <td><a href=${href} class="mono">${session.sessionId}</a></td>
      <td>${session.agent}</td>
      <td><${Badge} value=${sessionState(session)} /></td>
      <td class="num">${session.queueDepth}</td>
      <td class="num">${session.turns}</td>
      <td class="num">${money(session.totalCost)}</td>
      <td><span class=${session.agentLive ? 'dot dot-live' : 'dot'} title=${session.agentLive ? 'agent process live' : 'no live agent'}></span></td>
      <td class="muted" title=${session.lastActivity ?? ''}>${relativeTime(session.lastActivity, at)}</td>
    </tr>`;
}

export function SessionsList() {
  const list = sessions.value;
  return html`
    <section class="panel">
      <div class="panel-head">Start a task</div>
      <${NewTask} />
    </section>
    <section class="panel">
      <div class="panel-head">Sessions <span class="muted">${list ? list.length : ''}</span></div>
      <${ErrorLine} error=${sessionsError.value} />
      ${list === null ? html`<${Empty}>Loading…</${Empty}>` : list.length === 0 ? html`<${Empty}>No sessions yet: start a task above, or POST /task.</${Empty}>` : html`
        <table class="sessions">
          <thead><tr><th>Session</th><th>Agent</th><th>State</th><th class="num">Queue</th><th class="num">Turns</th><th class="num">Cost</th><th>Live</th><th>Last activity</th></tr></thead>
          <tbody>${list.map((s) => html`<${SessionRow} key=${s.sessionId} session=${s} at=${now.value} />`)}</tbody>
        </table>`}
    </section>`;
}
