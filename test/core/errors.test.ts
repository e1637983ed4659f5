/** The error table, the API reference and the failure → status map agree (the fastify pattern). */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { errorTable, publicError, RunnerError, type ErrorCode } from '../../src/core/errors.ts';
import { failureStatus, isFinal, statusForFailure, taskStatuses } from '../../src/core/task-status.ts';
import { ROOT } from '../support/harness.ts';

const documented = new Map(
  [...readFileSync(`${ROOT}/docs/api.md`, 'utf8').matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \| (.+) \|$/gm)]
    .map((m) => [m[1]!, { status: Number(m[2]), message: m[3]! }]),
);

test('every error code is documented in docs/api.md with its status and message, and nothing else is', () => {
  assert.deepEqual([...documented.keys()].sort(), Object.keys(errorTable).sort());
  for (const [code, entry] of Object.entries(errorTable)) {
    assert.deepEqual(documented.get(code), { status: entry.status, message: entry.message }, code);
  }
});

test('only INTERNAL is a 500', () => {
  assert.deepEqual(Object.entries(errorTable).filter(([, e]) => e.status === 500).map(([c]) => c), ['INTERNAL']);
});

test('every error code ends a task in a final status (a code without one does not compile)', () => {
  assert.deepEqual(Object.keys(failureStatus).sort(), Object.keys(errorTable).sort());
  for (const [code, status] of Object.entries(failureStatus)) {
    assert.ok(isFinal(status), `${code} → ${status}`);
    assert.equal(statusForFailure(code as ErrorCode), status);
  }
  assert.equal(statusForFailure('TASK_ABORTED'), 'aborted');
  assert.equal(statusForFailure('TASK_TIMEOUT'), 'timed_out');
  assert.equal(statusForFailure('BUDGET_EXCEEDED'), 'budget_exceeded');
  assert.equal(statusForFailure('TASK_INTERRUPTED'), 'interrupted');
  assert.equal(statusForFailure('INVALID_ENV'), 'failed');
  assert.deepEqual(taskStatuses.filter((s) => !isFinal(s)), ['queued', 'running', 'awaiting_input']);
});

test('INTERNAL and SANDBOX_UNAVAILABLE answers carry the table\'s message and a reference, never their own text', () => {
  const secretText = 'connect ENOENT /var/run/docker.sock (container claude-runner-abc: log tail ...)';
  for (const code of ['INTERNAL', 'SANDBOX_UNAVAILABLE'] as const) {
    const { body, logged } = publicError(new RunnerError(code, secretText, { tail: secretText }), 'req-123');
    assert.equal(logged, true);
    assert.ok(!JSON.stringify(body).includes('docker.sock'), JSON.stringify(body));
    assert.ok(body.message.startsWith(errorTable[code].message));
    assert.match(body.message, /req-123/);
    assert.deepEqual(body.details, { reference: 'req-123' });
  }
  const plain = publicError(new RunnerError('QUEUE_FULL', 'The session queue is full (20).'), 'req-1');
  assert.deepEqual(plain, { body: { code: 'QUEUE_FULL', message: 'The session queue is full (20).' }, logged: false });
});
