// The agent's open questions to a human, answered from the session page: a question (AskUserQuestion) as one
// button per option plus a free-text "Other", several choices as toggles; a tool call that needs permission as
// the tool and its input with Allow and Deny. Answers go to POST /tasks/:taskId/input; a prompt leaves the page
// when the stream says it was answered (input_received) or its task ended — never on the POST's reply alone.
import { useState } from 'preact/hooks';
import { api } from './api.js';
import { html } from './html.js';
import { ErrorLine } from './ui.js';
import { clock, pretty } from './format.js';
import { noteAnswerSent } from './transcript-model.js';

/** What a permission prompt shows of a tool call: the Bash command as it is, anything else as JSON. */
function callText(input) {
  if (input && typeof input === 'object' && typeof input.command === 'string') return input.command;
  return pretty(input ?? {});
}

/** Sends one answer; `sending` while it is in flight, `sent` after a 200 (the buttons stay off until the prompt goes). */
function useAnswer(model, prompt) {
  const [state, setState] = useState({ sending: false, sent: false, error: null });
  const send = async (body) => {
    setState({ sending: true, sent: false, error: null });
    try {
      const json = { requestId: prompt.requestId, ...body };
      // Noted first: the stream's input_received can arrive before the POST's reply.
      noteAnswerSent(model, prompt.requestId, json);
      await api(`tasks/${encodeURIComponent(prompt.taskId)}/input`, { method: 'POST', json });
      setState({ sending: false, sent: true, error: null });
    } catch (e) {
      setState({ sending: false, sent: false, error: `${e.code}: ${e.message}` });
    }
  };
  return { ...state, busy: state.sending || state.sent, send };
}

function OptionButton({ option, pressed, disabled, onClick }) {
  return html`<button type="button" class=${`btn option${pressed ? ' pressed' : ''}`} aria-pressed=${pressed === undefined ? undefined : String(pressed)}
    title=${option.description || undefined} data-label=${option.label} disabled=${disabled} onClick=${onClick}>${option.label}</button>`;
}

/** One question answered on its own: a click on an option, or the Other text, sends at once. */
function SingleQuestion({ question, answer }) {
  const [other, setOther] = useState('');
  const sendOther = (event) => {
    event.preventDefault();
    if (other.trim()) void answer.send({ answers: { [question.question]: other.trim() } });
  };
  return html`
    <div class="options">
      ${(question.options ?? []).map((option) => html`<${OptionButton} option=${option} disabled=${answer.busy}
        onClick=${() => answer.send({ answers: { [question.question]: option.label } })} />`)}
    </div>
    <form class="other" onSubmit=${sendOther}>
      <input name="other" placeholder="Other…" aria-label="Other answer" value=${other} disabled=${answer.busy} onInput=${(e) => setOther(e.currentTarget.value)} />
      <button type="submit" class="btn" disabled=${answer.busy || !other.trim()}>Send</button>
    </form>`;
}

/** Several questions, or several choices: toggles and an Other text per question, then one Send for all. */
function QuestionForm({ questions, answer }) {
  const [picked, setPicked] = useState({});
  const [others, setOthers] = useState({});
  const valueOf = (q) => [...(picked[q.question] ?? []), ...(others[q.question]?.trim() ? [others[q.question].trim()] : [])].join(', ');
  const complete = questions.every((q) => valueOf(q) !== '');
  const toggle = (q, label) => {
    const now = picked[q.question] ?? [];
    const next = q.multiSelect ? (now.includes(label) ? now.filter((l) => l !== label) : [...now, label]) : (now[0] === label ? [] : [label]);
    setPicked({ ...picked, [q.question]: next });
  };
  const submit = (event) => {
    event.preventDefault();
    if (complete) void answer.send({ answers: Object.fromEntries(questions.map((q) => [q.question, valueOf(q)])) });
  };
  return html`
    <form class="question-form" onSubmit=${submit}>
      ${questions.map((q) => html`
        <div class="question" data-question=${q.question}>
          ${questions.length > 1 ? html`<div class="question-head">${q.header ? html`<span class="chip">${q.header}</span>` : null} ${q.question}</div>` : null}
          <div class="options">
            ${(q.options ?? []).map((option) => html`<${OptionButton} option=${option} disabled=${answer.busy}
              pressed=${(picked[q.question] ?? []).includes(option.label)} onClick=${() => toggle(q, option.label)} />`)}
          </div>
          <input name="other" class="other-input" placeholder="Other…" aria-label=${`Other answer to ${q.question}`} value=${others[q.question] ?? ''}
            disabled=${answer.busy} onInput=${(e) => setOthers({ ...others, [q.question]: e.currentTarget.value })} />
        </div>`)}
      <button type="submit" class="btn primary send-answers" disabled=${answer.busy || !complete}>Send</button>
    </form>`;
}

function QuestionPrompt({ prompt, answer }) {
  const questions = prompt.questions ?? [];
  const single = questions.length === 1 && !questions[0].multiSelect;
  return html`
    ${questions.length === 1 ? html`<div class="question-head">${questions[0].header ? html`<span class="chip">${questions[0].header}</span>` : null} ${questions[0].question}</div>` : null}
    ${single ? html`<${SingleQuestion} question=${questions[0]} answer=${answer} />` : html`<${QuestionForm} questions=${questions} answer=${answer} />`}`;
}

function PermissionPrompt({ prompt, answer }) {
  const [reason, setReason] = useState('');
  const deny = () => answer.send({ decision: 'deny', ...(reason.trim() ? { message: reason.trim() } : {}) });
  return html`
    <div class="question-head">The agent wants to run <code class="tool-name">${prompt.tool ?? 'a tool'}</code></div>
    <pre class="code permission-input">${callText(prompt.input)}</pre>
    <div class="options">
      <button type="button" class="btn primary allow" disabled=${answer.busy} onClick=${() => answer.send({ decision: 'allow' })}>Allow</button>
      <button type="button" class="btn danger deny" disabled=${answer.busy} onClick=${deny}>Deny</button>
      <input name="reason" class="grow" placeholder="Reason for denying (optional, shown to the agent)" aria-label="Reason for denying"
        value=${reason} disabled=${answer.busy} onInput=${(e) => setReason(e.currentTarget.value)} />
    </div>`;
}

function InputPrompt({ model, prompt }) {
  const answer = useAnswer(model, prompt);
  return html`
    <div class=${`input-prompt prompt-${prompt.kind}`} data-request-id=${prompt.requestId} data-task-id=${prompt.taskId} role="group"
      aria-label=${prompt.kind === 'permission' ? 'Permission request' : 'Question from the agent'}>
      <div class="prompt-title">
        <span class="badge tone-ask">${prompt.kind === 'permission' ? 'permission' : 'question'}</span>
        ${prompt.expiresAt ? html`<span class="muted small">answer by ${clock(prompt.expiresAt)}</span>` : null}
        ${answer.sending ? html`<span class="muted small">sending…</span>` : answer.sent ? html`<span class="muted small">sent, waiting for the agent…</span>` : null}
      </div>
      ${prompt.kind === 'permission' ? html`<${PermissionPrompt} prompt=${prompt} answer=${answer} />` : html`<${QuestionPrompt} prompt=${prompt} answer=${answer} />`}
      <${ErrorLine} error=${answer.error} />
    </div>`;
}

/** Every prompt of the session still waiting for an answer (`prompts`: input_required frames). */
export function InputPrompts({ model, prompts }) {
  if (prompts.length === 0) return null;
  return html`<div class="input-prompts">${prompts.map((prompt) => html`<${InputPrompt} key=${prompt.requestId} model=${model} prompt=${prompt} />`)}</div>`;
}

/** The transcript's record of a prompt: what was asked, and the answer once there is one. */
export function AskBlock({ block }) {
  const prompt = block.prompt;
  const asked = prompt.kind === 'permission'
    ? html`asked permission for <code>${prompt.tool ?? 'a tool'}</code> <code class="muted">${callText(prompt.input)}</code>`
    : html`asked: ${(prompt.questions ?? []).map((q) => q.question).join(' · ') || 'a question'}`;
  const tone = block.answer === null ? 'ask-open' : block.answer.startsWith('Denied') || block.answer.startsWith('(not') ? 'bad-text' : 'ok-text';
  return html`
    <div class="ask-record" data-request-id=${prompt.requestId}>
      <span class="ask-mark">?</span> ${asked}
      <div class=${`ask-answer ${tone}`}>${block.answer ?? 'waiting for an answer…'}</div>
    </div>`;
}
