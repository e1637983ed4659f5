// A session's task history: newest first, each with its status, message, output, cost and duration;
// a row unfolds to the whole output or error.
import { html } from './html.js';
import { Badge, Empty } from './ui.js';
import { clock, duration, money, outputText, preview, tokens } from './format.js';

function TaskRow({ task }) {
  const result = task.error ? `${task.error.code}: ${task.error.message}` : outputText(task.output);
  return html`
    <details class="history-row" data-task-id=${task.taskId} data-status=${task.status}>
      <summary>
        <${Badge} value=${task.status} />
        <span class="history-message">${preview(task.message, 80)}</span>
        <span class="num">${money(task.cost)}</span>
        <span class="num">${duration(task.duration)}</span>
        <span class="num muted">${clock(task.createdAt)}</span>
      </summary>
      <div class="history-body">
        <div class="label">Message</div>
        <pre class="code">${task.message}</pre>
        <div class="label">${task.error ? 'Error' : 'Output'}</div>
        <pre class=${`code${task.error ? ' is-error' : ''}`}>${result || '—'}</pre>
        <div class="muted small">${task.taskId}${task.tools?.length ? ` · tools: ${task.tools.join(', ')}` : ''}${task.usage ? ` · ${tokens(task.usage)}` : ''}</div>
      </div>
    </details>`;
}

export function TaskHistory({ tasks }) {
  if (tasks === null) return html`<${Empty}>Loading…</${Empty}>`;
  if (tasks.length === 0) return html`<${Empty}>No tasks yet.</${Empty}>`;
  return html`<div class="history">${tasks.map((task) => html`<${TaskRow} key=${task.taskId} task=${task} />`)}</div>`;
}
