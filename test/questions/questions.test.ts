/**
 * Questions to a person, end to end on a real runner, sandbox and `claude`:
 * the agent's AskUserQuestion and a Bash call under a template's `ask` rule
 * pause the task (awaiting_input, an input_required event), an answer over
 * HTTP lets the same live process go on, and the model sees the answer (or the
 * denial); unanswered, the task times out; abort works while it waits.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { rule, text, toolUse } from '../../src/scripted-model/index.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { waitFinal, waitStatus } from '../sessions/support.ts';

const INPUT_TIMEOUT_MS = 6_000;
const COLOR = {
  questions: [{
    question: 'Which color?', header: 'Color', multiSelect: false,
    options: [{ label: 'Red', description: 'warm' }, { label: 'Blue', description: 'cool' }],
  }],
};

/** Reads a task's SSE stream until `stop` says so; returns the events seen. */
async function readTaskStream(url: string, taskId: string, stop: (event: any) => boolean): Promise<any[]> {
  const controller = new AbortController();
  const res = await fetch(`${url}/tasks/${taskId}/events`, { signal: controller.signal });
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const seen: any[] = [];
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return seen;
      buffer += value;
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = frame.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
        if (!data) continue;
        const event = JSON.parse(data);
        seen.push(event);
        if (stop(event)) return seen;
      }
    }
  } finally {
    controller.abort();
  }
}

describe('questions to a person', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      env: { INPUT_TIMEOUT_MS: String(INPUT_TIMEOUT_MS) },
      template: {
        'AGENTS.md': 'You help.',
        'keep.txt': 'keep me',
        'gone.txt': 'remove me',
        'runner.json': { permissions: { ask: ['Bash(rm:*)'] } },
      },
      rules: [
        rule('ask-color', toolUse('AskUserQuestion', COLOR), (ctx) => text(`answer was: ${ctx.lastToolResult}`)),
        rule('ask-nobody', toolUse('AskUserQuestion', COLOR), text('never')),
        rule('ask-abort', toolUse('AskUserQuestion', COLOR), text('never')),
        rule('rm-keep', toolUse('Bash', { command: 'rm -f /workspace/keep.txt', description: 'remove keep.txt' }),
          (ctx) => text(`error=${ctx.toolResults.at(-1)?.isError} result=${ctx.lastToolResult}`)),
        rule('rm-gone', toolUse('Bash', { command: 'rm -f /workspace/gone.txt', description: 'remove gone.txt' }),
          toolUse('Bash', { command: 'echo no-rule-matches', description: 'echo' }),
          (ctx) => text(`last=${ctx.lastToolResult}`)),
      ],
    });
  });
  after(async () => h?.close());

  test('a question is streamed, shown on the task, answered over HTTP, and the model gets the answer in the same process', async () => {
    const submitted = await h.api('/task', { method: 'POST', json: { sessionId: 'q1', message: 'ask-color', wait: false } });
    assert.equal(submitted.status, 202, JSON.stringify(submitted.body));
    const taskId = submitted.body.taskId;
    const seen = await readTaskStream(h.url, taskId, (e) => e.type === 'input_required');
    const asked = seen.at(-1);
    assert.equal(asked.type, 'input_required');
    assert.equal(asked.kind, 'question');
    assert.deepEqual(asked.questions, COLOR.questions);
    assert.ok(Date.parse(asked.expiresAt) > Date.now());

    const waiting = await waitStatus(h.api, taskId, 'awaiting_input');
    assert.equal(waiting.pendingInput.length, 1);
    assert.equal(waiting.pendingInput[0].requestId, asked.requestId);
    const liveBefore = (await h.api('/health')).body.liveAgents;

    // Wrong request, wrong kind, both kinds: refused, and the question stays pending.
    const stale = await h.api(`/tasks/${taskId}/input`, { method: 'POST', json: { requestId: 'input_nope', answers: { 'Which color?': 'Red' } } });
    assert.equal(stale.status, 409);
    assert.equal(stale.body.error.code, 'INPUT_NOT_PENDING');
    const kind = await h.api(`/tasks/${taskId}/input`, { method: 'POST', json: { requestId: asked.requestId, decision: 'allow' } });
    assert.equal(kind.status, 400);
    assert.equal(kind.body.error.code, 'INVALID_REQUEST');
    const both = await h.api(`/tasks/${taskId}/input`, { method: 'POST', json: { requestId: asked.requestId, decision: 'allow', answers: {} } });
    assert.equal(both.status, 400);
    const unasked = await h.api(`/tasks/${taskId}/input`, { method: 'POST', json: { requestId: asked.requestId, answers: { 'Which size?': 'L' } } });
    assert.equal(unasked.status, 400);
    assert.match(unasked.body.error.message, /Which color\?/);

    const answered = await h.api(`/tasks/${taskId}/input`, { method: 'POST', json: { requestId: asked.requestId, answers: { 'Which color?': 'Blue' } } });
    assert.equal(answered.status, 200, JSON.stringify(answered.body));
    assert.equal(answered.body.status, 'running');
    assert.deepEqual(answered.body.pendingInput, []);

    const done = await waitFinal(h.api, taskId);
    assert.equal(done.status, 'succeeded', JSON.stringify(done.error));
    assert.match(JSON.stringify(done.output), /answer was: .*\\"Which color\?\\"=\\"Blue\\"/);
    assert.deepEqual(done.tools, ['AskUserQuestion']);
    // The model's input carried the answer as the tool's (successful) result.
    const last = h.model.findRequests({ prompt: 'ask-color', kind: 'main' }).at(-1)!;
    assert.match(JSON.stringify(last.body), /\\"Which color\?\\"=\\"Blue\\"/);
    // One agent process throughout: one init, the stream in order, and the agent still live.
    const events = await readTaskStream(h.url, taskId, (e) => e.type === 'task_complete' || e.type === 'task_error');
    const types = events.map((e) => e.type).filter((t) => ['init', 'input_required', 'input_received', 'task_complete'].includes(t));
    assert.deepEqual(types, ['init', 'input_required', 'input_received', 'task_complete']);
    const received = events.find((e) => e.type === 'input_received');
    assert.deepEqual([received.requestId, received.answers], [asked.requestId, { 'Which color?': 'Blue' }]);
    assert.equal((await h.api('/health')).body.liveAgents, liveBefore);
    // Answering again: nothing is pending any more.
    const again = await h.api(`/tasks/${taskId}/input`, { method: 'POST', json: { requestId: asked.requestId, answers: { 'Which color?': 'Red' } } });
    assert.equal(again.status, 409);
    assert.equal(again.body.error.code, 'INPUT_NOT_PENDING');
  });

  test('a Bash call under an ask rule waits for a decision: denied, the model sees the denial; allowed, it runs; no rule, no question', async () => {
    const denied = await h.api('/task', { method: 'POST', json: { sessionId: 'p1', message: 'rm-keep', wait: false } });
    const ask = (await readTaskStream(h.url, denied.body.taskId, (e) => e.type === 'input_required')).at(-1);
    assert.equal(ask.kind, 'permission');
    assert.equal(ask.tool, 'Bash');
    assert.equal(ask.input.command, 'rm -f /workspace/keep.txt');
    const no = await h.api(`/tasks/${denied.body.taskId}/input`, { method: 'POST', json: { requestId: ask.requestId, decision: 'deny', message: 'not today' } });
    assert.equal(no.status, 200, JSON.stringify(no.body));
    const deniedDone = await waitFinal(h.api, denied.body.taskId);
    assert.equal(deniedDone.status, 'succeeded');
    assert.match(JSON.stringify(deniedDone.output), /error=true result=.*not today/);
    const kept = await h.api('/session/p1/files/keep.txt');
    assert.equal(kept.status, 200, 'the denied rm did not run');

    const allowed = await h.api('/task', { method: 'POST', json: { sessionId: 'p1', message: 'rm-gone', wait: false } });
    const ask2 = (await readTaskStream(h.url, allowed.body.taskId, (e) => e.type === 'input_required')).at(-1);
    assert.equal(ask2.input.command, 'rm -f /workspace/gone.txt');
    await h.api(`/tasks/${allowed.body.taskId}/input`, { method: 'POST', json: { requestId: ask2.requestId, decision: 'allow' } });
    const allowedDone = await waitFinal(h.api, allowed.body.taskId);
    assert.equal(allowedDone.status, 'succeeded', JSON.stringify(allowedDone.error));
    assert.match(JSON.stringify(allowedDone.output), /last=no-rule-matches/);
    assert.equal((await h.api('/session/p1/files/gone.txt')).status, 404, 'the allowed rm ran');
    // The echo matched no rule: one question in the whole task.
    const events = await readTaskStream(h.url, allowed.body.taskId, (e) => e.type === 'task_complete' || e.type === 'task_error');
    assert.equal(events.filter((e) => e.type === 'input_required').length, 1);
    assert.equal(events.filter((e) => e.type === 'tool_end').length, 2);
  });

  test('a question nobody answers ends the task timed_out with INPUT_TIMEOUT', async () => {
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 't1', message: 'ask-nobody' } });
    assert.equal(res.body.status, 'timed_out', JSON.stringify(res.body));
    assert.equal(res.body.error.code, 'INPUT_TIMEOUT');
    assert.match(res.body.error.message, new RegExp(`within ${INPUT_TIMEOUT_MS} ms`));
    const task = await h.api(`/tasks/${res.body.taskId}`);
    assert.deepEqual(task.body.pendingInput, []);
  });

  test('abort while waiting ends the task aborted', async () => {
    const submitted = await h.api('/task', { method: 'POST', json: { sessionId: 'a1', message: 'ask-abort', wait: false } });
    await waitStatus(h.api, submitted.body.taskId, 'awaiting_input');
    const aborted = await h.api(`/tasks/${submitted.body.taskId}/abort`, { method: 'POST' });
    assert.equal(aborted.status, 200);
    assert.equal(aborted.body.status, 'aborted');
    assert.deepEqual(aborted.body.pendingInput, []);
    const events = await readTaskStream(h.url, submitted.body.taskId, (e) => e.type === 'task_error');
    assert.deepEqual(events.filter((e) => ['input_required', 'abort', 'task_error'].includes(e.type)).map((e) => e.type), ['input_required', 'abort', 'task_error']);
    const late = await h.api(`/tasks/${submitted.body.taskId}/input`, { method: 'POST', json: { requestId: 'x', answers: { 'Which color?': 'Red' } } });
    assert.equal(late.status, 409);
  });
});
