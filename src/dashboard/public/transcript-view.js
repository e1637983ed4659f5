// The live transcript for people: each task with the user's message, the agent's streamed text, its thinking
// (muted, folded), each tool call as a card that unfolds to its input and result, questions to a human with
// their answers, refusals and errors in red.
import { html } from './html.js';
import { Badge, Empty } from './ui.js';
import { duration, money, preview, pretty } from './format.js';
import { AskBlock } from './input-prompt.js';

const TOOL_ARGUMENT_KEYS = ['command', 'file_path', 'path', 'pattern', 'url', 'query', 'description', 'prompt'];

/** The one input field that says what a tool call does (the Bash command, the file read...). */
function toolArgument(input) {
  if (input === null || typeof input !== 'object') return preview(input, 100);
  for (const key of TOOL_ARGUMENT_KEYS) if (typeof input[key] === 'string') return preview(input[key], 100);
  return preview(input, 100);
}

function ToolCard({ block }) {
  const state = !block.done ? (block.cut ? 'cut' : 'running') : block.isError ? 'error' : 'ok';
  const label = { running: 'running…', cut: 'no result', error: 'error', ok: 'done' }[state];
  return html`
    <details class=${`tool tool-${state}`} data-tool=${block.tool} data-tool-use-id=${block.toolUseId}>
      <summary>
        <span class="tool-name">${block.tool}</span>
        <code class="tool-arg">${toolArgument(block.input)}</code>
        <span class="tool-state">${label}</span>
      </summary>
      <div class="tool-body">
        <div class="label">Input</div>
        <pre class="code tool-input">${block.input === undefined ? '—' : pretty(block.input)}</pre>
        <div class="label">Result${block.truncated ? ' (cut at 64 KiB)' : ''}</div>
        <pre class=${`code tool-result${block.isError ? ' is-error' : ''}`}>${block.done ? (block.result || '(empty)') : state === 'cut' ? '(the task ended first)' : '…'}</pre>
      </div>
    </details>`;
}

function Block({ block, live }) {
  switch (block.kind) {
    case 'text':
      return html`<div class=${`say${live ? ' streaming' : ''}`}>${block.text}</div>`;
    case 'thinking':
      return html`<details class="thinking"><summary>Thinking · <span class="muted">${preview(block.text, 90)}</span></summary><div class="thinking-text">${block.text}</div></details>`;
    case 'tool':
      return html`<${ToolCard} block=${block} />`;
    case 'egress':
      return html`<div class="egress" role="alert">⚠ network policy refused <b>${block.host}:${block.port}</b> — ${block.reason}</div>`;
    case 'abort':
      return html`<div class="note warn-text">■ abort requested</div>`;
    case 'ask':
      return html`<${AskBlock} block=${block} />`;
    default:
      return html`<div class="note generic-event"><code>${block.frame.type}</code> <span class="muted">${preview(block.frame, 160)}</span></div>`;
  }
}

function Ending({ entry }) {
  const end = entry.ending;
  if (!end) return null;
  const figures = `${duration(end.duration)} · ${money(end.cost)}`;
  if (end.type === 'task_complete') {
    const tools = end.tools?.length ? ` · tools: ${end.tools.join(', ')}` : '';
    return html`<div class="ending ok-text">✓ completed · ${figures}${tools}</div>`;
  }
  return html`<div class="ending bad-text" role="alert"><b>${entry.status.replace('_', ' ')}</b> · ${end.error?.code ?? ''}: ${end.error?.message ?? ''} · ${figures}</div>`;
}

function TaskEntry({ entry, message }) {
  const running = entry.status === 'running';
  const last = entry.blocks.at(-1);
  return html`
    <article class="turn" data-task-id=${entry.taskId} data-status=${entry.status}>
      <header class="turn-head">
        <span class="prompt-mark">›</span>
        <span class="turn-message">${message ?? entry.taskId}</span>
        <${Badge} value=${entry.status} />
      </header>
      <div class="turn-body">
        ${entry.blocks.map((block) => html`<${Block} block=${block} live=${running && block === last} />`)}
        ${running && entry.blocks.length === 0 ? html`<div class="note muted">starting…</div>` : null}
        ${running && entry.usage.costUsd > 0 ? html`<div class="note muted">${entry.usage.inputTokens + entry.usage.outputTokens} tokens · ${money(entry.usage.costUsd)} so far</div>` : null}
      </div>
      <${Ending} entry=${entry} />
    </article>`;
}

/** `messages`: taskId → the message the user sent (from the task history). */
export function Transcript({ model, messages, limit = 30 }) {
  const entries = model.entries;
  if (entries.length === 0) return html`<${Empty}>No activity yet. Send a task below.</${Empty}>`;
  const shown = entries.slice(-limit);
  return html`
    ${entries.length > shown.length ? html`<div class="note muted">${entries.length - shown.length} earlier entries not shown</div>` : null}
    ${shown.map((entry) => {
      if (entry.kind === 'task') return html`<${TaskEntry} key=${entry.taskId} entry=${entry} message=${messages.get(entry.taskId)} />`;
      if (entry.kind === 'reset') return html`<div class="divider">session reset</div>`;
      if (entry.kind === 'gap') return html`<div class="divider">events ${entry.fromSeq}–${entry.toSeq} dropped by retention</div>`;
      return html`<div class="note generic-event"><code>${entry.frame.type}</code> <span class="muted">${preview(entry.frame, 160)}</span></div>`;
    })}`;
}
