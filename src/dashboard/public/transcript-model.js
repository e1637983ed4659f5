// The live transcript as data: stream frames folded into one entry per task (its text, thinking, tool calls,
// refusals, questions to a human and ending, in order) and session markers (reset, gap), plus the prompts still
// waiting for an answer. Views read it; only `apply` and `noteAnswerSent` change it.

const ENDED = new Set(['task_complete', 'task_error']);

export function createTranscript() {
  // prompts: requestId → an open input_required frame; asks: requestId → its transcript block;
  // sentReasons: requestId → the reason this page gave with a deny (the input_received event may not carry it).
  return { entries: [], tasks: new Map(), tools: new Map(), prompts: new Map(), asks: new Map(), sentReasons: new Map(), connected: null };
}

/** The prompts still waiting for an answer, oldest first. */
export function openPrompts(model) {
  return [...model.prompts.values()];
}

/** Remembers what this page sent for a prompt, for the transcript line once it is answered. */
export function noteAnswerSent(model, requestId, body) {
  if (body.decision === 'deny' && body.message) model.sentReasons.set(requestId, body.message);
  else model.sentReasons.delete(requestId);
}

/** The transcript's line for an answer: "You chose: Blue", "Allowed", "Denied: reason". */
export function answerText(model, frame) {
  if (frame.kind === 'permission') {
    if (frame.decision === 'allow') return 'Allowed';
    const reason = frame.message ?? model.sentReasons.get(frame.requestId);
    return reason ? `Denied: ${reason}` : 'Denied';
  }
  const answers = Object.entries(frame.answers ?? {});
  if (answers.length === 1) return `You chose: ${answers[0][1]}`;
  return `You chose: ${answers.map(([question, answer]) => `${question} → ${answer}`).join('; ')}`;
}

function closePromptsOf(model, entry) {
  for (const [requestId, prompt] of model.prompts) if (prompt.taskId === entry.taskId) model.prompts.delete(requestId);
  for (const block of entry.blocks) if (block.kind === 'ask' && block.answer === null) block.answer = '(not answered: the task ended)';
}

function taskEntry(model, frame) {
  let entry = model.tasks.get(frame.taskId);
  if (!entry) {
    entry = { kind: 'task', taskId: frame.taskId, ts: frame.ts, status: 'queued', blocks: [], usage: { inputTokens: 0, outputTokens: 0, costUsd: 0 }, ending: null };
    model.tasks.set(frame.taskId, entry);
    model.entries.push(entry);
  }
  return entry;
}

/** Appends streamed text to the block before it when it is of the same kind, else starts a block. */
function appendText(entry, kind, text) {
  const last = entry.blocks.at(-1);
  if (last && last.kind === kind) last.text += text;
  else entry.blocks.push({ kind, text });
}

/** Folds one frame into the model. */
export function apply(model, frame) {
  switch (frame.type) {
    case 'connected':
      model.connected = frame;
      return;
    case 'gap':
      model.entries.push({ kind: 'gap', fromSeq: frame.fromSeq, toSeq: frame.toSeq });
      return;
    case 'session_reset':
      model.entries.push({ kind: 'reset', ts: frame.ts });
      return;
  }
  if (!frame.taskId) {
    model.entries.push({ kind: 'event', frame });
    return;
  }
  const entry = taskEntry(model, frame);
  switch (frame.type) {
    case 'task_queued':
      entry.status = 'queued';
      break;
    case 'task_start':
      entry.status = 'running';
      entry.resumed = frame.resumed;
      break;
    case 'init':
      entry.model = frame.model;
      break;
    case 'text':
      appendText(entry, 'text', frame.text ?? '');
      break;
    case 'thinking':
      appendText(entry, 'thinking', frame.text ?? '');
      break;
    case 'tool_start': {
      const block = { kind: 'tool', tool: frame.tool, input: frame.input, toolUseId: frame.toolUseId, done: false };
      model.tools.set(frame.toolUseId, block);
      entry.blocks.push(block);
      break;
    }
    case 'tool_end': {
      let block = model.tools.get(frame.toolUseId);
      if (!block) {
        block = { kind: 'tool', tool: frame.tool, input: undefined, toolUseId: frame.toolUseId };
        entry.blocks.push(block);
      }
      Object.assign(block, { done: true, result: frame.result, isError: frame.isError === true, truncated: frame.truncated === true });
      break;
    }
    case 'usage':
      entry.usage.inputTokens += frame.inputTokens ?? 0;
      entry.usage.outputTokens += frame.outputTokens ?? 0;
      entry.usage.costUsd += frame.costUsd ?? 0;
      entry.model ??= frame.model;
      break;
    case 'egress_refused':
      entry.blocks.push({ kind: 'egress', host: frame.host, port: frame.port, reason: frame.reason });
      break;
    case 'abort':
      entry.blocks.push({ kind: 'abort' });
      break;
    case 'input_required': {
      const block = { kind: 'ask', prompt: frame, answer: null };
      model.prompts.set(frame.requestId, frame);
      model.asks.set(frame.requestId, block);
      entry.blocks.push(block);
      entry.status = 'awaiting_input';
      break;
    }
    case 'input_received': {
      model.prompts.delete(frame.requestId);
      const block = model.asks.get(frame.requestId);
      if (block) block.answer = answerText(model, frame);
      else entry.blocks.push({ kind: 'ask', prompt: frame, answer: answerText(model, frame) });
      if (entry.status === 'awaiting_input' && !openPrompts(model).some((p) => p.taskId === entry.taskId)) entry.status = 'running';
      break;
    }
    default:
      if (ENDED.has(frame.type)) {
        entry.status = frame.type === 'task_complete' ? 'succeeded' : frame.status ?? 'failed';
        entry.ending = frame;
        // A tool still open when its task ended will never get its result.
        for (const block of entry.blocks) if (block.kind === 'tool' && !block.done) block.cut = true;
        closePromptsOf(model, entry);
      } else entry.blocks.push({ kind: 'event', frame });
  }
}

/** Does a frame end a task or change the session's state (so lists and histories should be reloaded)? */
export function changesState(frame) {
  return ['task_queued', 'task_start', 'task_complete', 'task_error', 'session_reset', 'input_required', 'input_received'].includes(frame.type);
}
