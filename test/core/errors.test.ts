/** The error table, the API reference and the failure → status map agree (the fastify pattern). */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { errorTable, type ErrorCode } from '../../src/core/errors.ts';
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

test('every failure code ends a task in a final status, and unknown codes end it failed', () => {
  for (const [code, status] of Object.entries(failureStatus)) {
    assert.ok(Object.hasOwn(errorTable, code), code);
    assert.ok(isFinal(status), `${code} → ${status}`);
    assert.equal(statusForFailure(code as ErrorCode), status);
  }
  assert.equal(statusForFailure('INVALID_ENV'), 'failed');
  assert.deepEqual(taskStatuses.filter((s) => !isFinal(s)), ['queued', 'running']);
});
