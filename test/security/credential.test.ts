/**
 * The agent never holds the model credential: the runner runs as its own
 * process with a unique sentinel as ANTHROPIC_API_KEY in its environment (as
 * an operator runs it); the agent, scripted to hunt for it everywhere it can
 * look, finds nothing, while its model calls reach the upstream with the
 * sentinel swapped in. The task token it can read dies with the task, and it
 * opens nothing but the Messages API.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { bash, rule, text } from '../../src/scripted-model/index.ts';
import { b64, execIn, sentinel, sessionContainer, spawnRunner, toolResults, type SpawnedRunner } from './support.ts';

const KEY = sentinel('sk-ant-sentinel');
/** Rebuilds the sentinel in a shell variable; the sentinel's text itself is never sent into the sandbox. */
const LOAD = `S=$(echo ${b64(KEY)} | base64 -d)`;
/** Calls the gateway through the relay with the current task token; prints the HTTP status. */
const gatewayCall = (label: string, path: string, token = '$(cat /run/claude-runner/token)', extra = '') =>
  `curl -s --path-as-is -o /dev/null -w '${label}:%{http_code}\\n' -H "x-api-key: ${token}" -H 'content-type: application/json' ${extra} -d '{"model":"claude-opus-5-5","messages":[{"role":"user","content":"x"}]}' 'http://127.0.0.1:4100${path}'`;

describe('the agent never holds the model credential', () => {
  let r: SpawnedRunner;

  before(async () => {
    r = await spawnRunner({
      upstreamKey: KEY,
      rules: [
        rule('hunt-for-the-key-q7',
          bash('env; echo ---environ---; cat /proc/*/environ 2>/dev/null | tr "\\0" "\\n"; echo ---ps---; ps auxe 2>&1; echo ---cmdline---; cat /proc/*/cmdline 2>/dev/null | tr "\\0" " "'),
          bash(`${LOAD}; grep -rlsF -- "$S" / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev | wc -l | sed 's/^/fs-matches:/'; grep -lsF -- "$S" /proc/[0-9]*/environ /proc/[0-9]*/cmdline | wc -l | sed 's/^/proc-matches:/'`),
          bash(`${LOAD}; ls -la ~ /run/claude-runner; grep -rlsF -- "$S" ~ /run/claude-runner /workspace /tmp | wc -l | sed 's/^/home-matches:/'`),
          text('hunt finished: nothing found'),
        ),
        rule('save-my-token-q7',
          bash(`cat /run/claude-runner/token > /workspace/saved-token; ${gatewayCall('during', '/v1/messages/count_tokens')}`),
          text('token saved'),
        ),
        rule('other-endpoints-q7',
          bash([
            gatewayCall('files', '/v1/files'),
            gatewayCall('batches', '/v1/messages/batches'),
            gatewayCall('models', '/v1/models', undefined, '-X GET'),
            gatewayCall('traversal', '/v1/messages/../files'),
            gatewayCall('encoded', '/v1/messages/%2e%2e/files'),
            gatewayCall('get-messages', '/v1/messages', undefined, '-X GET'),
          ].join('; ')),
          text('probed'),
        ),
      ],
    });
  });
  after(async () => r?.close());

  test('env, /proc/*/environ, ps auxe, the home, /run/claude-runner and the whole filesystem hold no trace of the key', async () => {
    const res = await r.api('/task', { method: 'POST', json: { sessionId: 'hunter', message: 'hunt-for-the-key-q7' } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const calls = r.model.findRequests({ prompt: 'hunt-for-the-key-q7', kind: 'main' });
    assert.equal(calls.length, 4);
    const seen = toolResults(calls.at(-1));
    // The searches ran and saw what they should (so "nothing found" means something).
    assert.match(seen, /ANTHROPIC_BASE_URL=http:\/\/127\.0\.0\.1:4100/);
    assert.match(seen, /---ps---[\s\S]*\/opt\/claude\/claude/);
    assert.match(seen, /fs-matches:0\b/);
    assert.match(seen, /proc-matches:0\b/);
    assert.match(seen, /home-matches:0\b/);
    assert.match(seen, /gateway\.sock/);
    assert.ok(!seen.includes(KEY), 'the sentinel reached a tool result');
    // Every model call went through the gateway, which swapped the sentinel in.
    for (const call of r.model.requests) {
      assert.equal(call.headers['x-api-key'], KEY);
      assert.equal(call.headers.authorization, undefined);
    }
    // What the agent sent was a task token, which the upstream never sees either.
    assert.ok(!JSON.stringify(r.model.requests.map((c) => c.body)).includes(KEY));
    assert.ok(!r.logs().includes(KEY), 'the sentinel reached the runner log');
  });

  test('a saved task token works during its task and gets 401 once the task is over', async () => {
    const res = await r.api('/task', { method: 'POST', json: { sessionId: 'saver', message: 'save-my-token-q7' } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const seen = toolResults(r.model.findRequests({ prompt: 'save-my-token-q7', kind: 'main' }).at(-1));
    assert.match(seen, /during:200/);
    const container = await sessionContainer(r.runnerId, 'saver');
    assert.ok(container);
    const before = r.model.requests.length;
    const late = await execIn(container.Id, ['sh', '-c', [
      gatewayCall('after-messages', '/v1/messages?beta=true', '$(cat /workspace/saved-token)'),
      gatewayCall('after-count', '/v1/messages/count_tokens', '$(cat /workspace/saved-token)'),
      gatewayCall('current-file', '/v1/messages', '$(cat /run/claude-runner/token)'),
    ].join('; ')]);
    assert.match(late.output, /after-messages:401/);
    assert.match(late.output, /after-count:401/);
    // The token file still holds the last token: dead as well.
    assert.match(late.output, /current-file:401/);
    assert.equal(r.model.requests.length, before, 'a request with a dead token reached the upstream');
  });

  test('a task token opens the Messages API only: no files, batches, models or path tricks', async () => {
    const res = await r.api('/task', { method: 'POST', json: { sessionId: 'prober', message: 'other-endpoints-q7' } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const seen = toolResults(r.model.findRequests({ prompt: 'other-endpoints-q7', kind: 'main' }).at(-1));
    for (const label of ['files', 'batches', 'models', 'traversal', 'encoded', 'get-messages']) {
      assert.match(seen, new RegExp(`${label}:(404|405)`), `${label}: ${seen}`);
    }
    const forwarded = r.model.requests.map((c) => `${c.method} ${c.path}`).filter((p) => !/^POST \/v1\/messages(\/count_tokens)?(\?beta=true)?$/.test(p));
    assert.deepEqual(forwarded, [], 'only POST /v1/messages (and its count_tokens) may reach the upstream');
  });
});
