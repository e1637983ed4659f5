// One session: its figures and controls (abort, reset, delete), the live transcript with the agent's open
// questions and a message box, and beside it the task history or the workspace files. Lists reload when the stream says something changed.
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { api, sessionPath } from './api.js';
import { html } from './html.js';
import { apply, changesState, createTranscript, openPrompts } from './transcript-model.js';
import { InputPrompts } from './input-prompt.js';
import { Transcript } from './transcript-view.js';
import { TaskHistory } from './task-history.js';
import { FileBrowser } from './files.js';
import { ActionButton, Badge, ErrorLine } from './ui.js';
import { money, relativeTime } from './format.js';
import { navigate, now, refresh, sessions, sessionState } from './store.js';
import { openSessionStream } from './stream.js';

/** Streams the session into a transcript model; re-renders at most once a frame however fast events come. */
function useTranscript(sessionId, onChange) {
  const model = useRef(null);
  if (model.current === null) model.current = createTranscript();
  const [, setVersion] = useState(0);
  const [status, setStatus] = useState('connecting');
  useEffect(() => {
    let scheduled = 0;
    const close = openSessionStream(sessionId, {
      onStatus: setStatus,
      onFrame: (frame) => {
        apply(model.current, frame);
        if (changesState(frame)) onChange(frame);
        if (!scheduled) scheduled = requestAnimationFrame(() => {
          scheduled = 0;
          setVersion((v) => v + 1);
        });
      },
    });
    return () => {
      close();
      cancelAnimationFrame(scheduled);
    };
  }, [sessionId]);
  return { model: model.current, status };
}

/** Keeps a scrolled box pinned to its bottom while new content arrives, unless the reader scrolled up. */
function useStickToBottom(ref, dependency) {
  const pinned = useRef(true);
  useEffect(() => {
    const box = ref.current;
    const onScroll = () => {
      pinned.current = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
    };
    box.addEventListener('scroll', onScroll);
    return () => box.removeEventListener('scroll', onScroll);
  }, []);
  useLayoutEffect(() => {
    if (pinned.current && ref.current) ref.current.scrollTop = ref.current.scrollHeight;
  });
  return dependency;
}

function Composer({ sessionId, onSent }) {
  const [message, setMessage] = useState('');
  const [error, setError] = useState(null);
  const [sending, setSending] = useState(false);
  const send = async (event) => {
    event?.preventDefault();
    if (!message.trim() || sending) return;
    setSending(true);
    setError(null);
    try {
      await api('task', { method: 'POST', json: { sessionId, message, wait: false } });
      setMessage('');
      onSent();
    } catch (e) {
      setError(`${e.code}: ${e.message}`);
    } finally {
      setSending(false);
    }
  };
  return html`
    <form class="composer" onSubmit=${send}>
      <textarea name="message" rows="2" placeholder="Send a task to this session… (Ctrl+Enter)" value=${message}
        onInput=${(e) => setMessage(e.currentTarget.value)}
        onKeyDown=${(e) => (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) && send(e)}></textarea>
      <button type="submit" class="btn primary" disabled=${sending || !message.trim()}>Send</button>
      <${ErrorLine} error=${error} />
    </form>`;
}

export function SessionPage({ sessionId }) {
  const [tasks, setTasks] = useState(null);
  const [tab, setTab] = useState('tasks');
  const [filesVersion, setFilesVersion] = useState(0);
  const [error, setError] = useState(null);
  const transcriptBox = useRef(null);

  const loadTasks = () => api(`${sessionPath(sessionId)}/tasks?limit=50`)
    .then((body) => setTasks(body.tasks))
    .catch((e) => setTasks(e.code === 'SESSION_NOT_FOUND' ? [] : (setError(e.message), [])));

  const { model, status } = useTranscript(sessionId, (frame) => {
    void loadTasks();
    void refresh();
    if (frame.type === 'task_complete' || frame.type === 'task_error' || frame.type === 'session_reset') setFilesVersion((v) => v + 1);
  });
  useEffect(() => void loadTasks(), [sessionId]);
  useStickToBottom(transcriptBox, model);

  const session = sessions.value?.find((s) => s.sessionId === sessionId);
  const messages = new Map((tasks ?? []).map((task) => [task.taskId, task.message]));
  const act = async (what) => {
    setError(null);
    try {
      await what();
    } catch (e) {
      setError(`${e.code}: ${e.message}`);
    }
    void refresh();
    void loadTasks();
  };
  const active = session && (session.state === 'busy' || session.state === 'queued');

  return html`
    <section class="session-page">
      <div class="session-bar">
        <a href="#/" class="back">← Sessions</a>
        <h1 class="session-id">${sessionId}</h1>
        ${session ? html`<${Badge} value=${sessionState(session)} />` : html`<span class="badge tone-muted">new</span>`}
        <span class="figure"><span class="muted">agent</span> ${session?.agent ?? '—'}</span>
        <span class="figure"><span class="muted">turns</span> ${session?.turns ?? 0}</span>
        <span class="figure"><span class="muted">queue</span> ${session?.queueDepth ?? 0}</span>
        <span class="figure"><span class="muted">cost</span> ${money(session?.totalCost ?? 0)}</span>
        <span class="figure"><span class="muted">active</span> ${relativeTime(session?.lastActivity, now.value)}</span>
        <span class=${`stream-status stream-${status}`} title="live event stream">${status}</span>
        <span class="spacer"></span>
        <${ActionButton} label="Abort" tone="warn" disabled=${!active} title="Stop the running task and drop the queued ones"
          onClick=${() => act(() => api(`task/${encodeURIComponent(sessionId)}/abort`, { method: 'POST' }))} />
        <${ActionButton} label="Reset" disabled=${!session} confirm=${`Reset ${sessionId}? Its workspace goes back to the template and its memory is forgotten; running and queued tasks are aborted.`}
          onClick=${() => act(() => api(`${sessionPath(sessionId)}/reset`, { method: 'POST' }))} />
        <${ActionButton} label="Delete" tone="danger" disabled=${!session} confirm=${`Delete ${sessionId}? Its container, workspace, memory, tasks and events are removed.`}
          onClick=${() => act(async () => {
            await api(sessionPath(sessionId), { method: 'DELETE' });
            navigate('#/');
          })} />
      </div>
      <${ErrorLine} error=${error} />
      <div class="session-grid">
        <div class="panel transcript-panel">
          <div class="panel-head">Live transcript</div>
          <div class="transcript" ref=${transcriptBox}>
            <${Transcript} model=${model} messages=${messages} />
          </div>
          <${InputPrompts} model=${model} prompts=${openPrompts(model)} />
          <${Composer} sessionId=${sessionId} onSent=${() => (loadTasks(), refresh())} />
        </div>
        <div class="panel side-panel">
          <div class="panel-head tabs" role="tablist">
            <button type="button" role="tab" class=${tab === 'tasks' ? 'tab active' : 'tab'} aria-selected=${tab === 'tasks'} onClick=${() => setTab('tasks')}>Tasks ${tasks ? `(${tasks.length})` : ''}</button>
            <button type="button" role="tab" class=${tab === 'files' ? 'tab active' : 'tab'} aria-selected=${tab === 'files'} onClick=${() => setTab('files')}>Files</button>
          </div>
          <div class="side-body">
            ${tab === 'tasks' ? html`<${TaskHistory} tasks=${tasks} />` : html`<${FileBrowser} sessionId=${sessionId} version=${filesVersion} />`}
          </div>
        </div>
      </div>
    </section>`;
}
