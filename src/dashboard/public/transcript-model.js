// The live transcript as data: stream frames folded into one entry per task (its text, thinking, tool calls,
// refusals and ending, in order) and session markers (reset, gap). Views read it; only `apply` changes it.

const ENDED = new Set(['task_complete', 'task_error']);

export function createTranscript() {
  return { entries: [], tasks: new Map(), tools: new Map(), connected: null };
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
    default:
      if (ENDED.has(frame.type)) {
        entry.status = frame.type === 'task_complete' ? 'succeeded' : frame.status ?? 'failed';
        entry.ending = frame;
        // A tool still open when its task ended will never get its result.
        for (const block of entry.blocks) if (block.kind === 'tool' && !block.done) block.cut = true;
      } else entry.blocks.push({ kind: 'event', frame });
  }
}

/** Does a frame end a task or change the session's state (so lists and histories should be reloaded)? */
export function changesState(frame) {
  return ['task_queued', 'task_start', 'task_complete', 'task_error', 'session_reset'].includes(frame.type);
}
