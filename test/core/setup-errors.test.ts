/** A machine without the sandbox image, or without a Docker engine: the server runs and says what to do. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startHarness, type Harness } from '../support/harness.ts';

describe('the sandbox image is missing', () => {
  let h: Harness;
  before(async () => { h = await startHarness({ env: { SANDBOX_IMAGE: 'claude-runner-sandbox:does-not-exist' } }); });
  after(async () => h?.close());

  test('a task fails with SANDBOX_IMAGE_MISSING, telling to run npm run image; health is degraded', async () => {
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'no-image', message: 'hello' } });
    assert.equal(res.status, 503, JSON.stringify(res.body));
    assert.equal(res.body.error.code, 'SANDBOX_IMAGE_MISSING');
    assert.match(res.body.error.message, /npm run image/);
    const health = await h.api('/health');
    assert.equal(health.status, 503);
    assert.equal(health.body.status, 'degraded');
    assert.match(health.body.docker, /SANDBOX_IMAGE_MISSING/);
  });
});

describe('the Docker engine is not reachable', () => {
  let h: Harness;
  before(async () => { h = await startHarness({ env: { DOCKER_SOCKET: '/tmp/no-docker-here.sock' } }); });
  after(async () => h?.close());

  test('the server starts; a task fails with SANDBOX_UNAVAILABLE saying how to start Docker', async () => {
    const res = await h.api('/task', { method: 'POST', json: { sessionId: 'no-docker', message: 'hello' } });
    assert.equal(res.status, 503, JSON.stringify(res.body));
    assert.equal(res.body.error.code, 'SANDBOX_UNAVAILABLE');
    assert.match(res.body.error.message, /docker/i);
    assert.equal((await h.api('/health')).body.status, 'degraded');
    // The task is recorded as failed, not lost.
    const task = await h.api(`/tasks/${res.body.taskId}`);
    assert.equal(task.body.status, 'failed');
  });
});
