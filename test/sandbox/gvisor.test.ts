/**
 * gVisor sessions (SANDBOX_RUNTIME=runsc) behave like the others, end to end
 * through the runner's API: the sandbox is gVisor's and hardened the same,
 * the agent's tools stat their working folder (`stat`, `ls -la`: older gVisor
 * releases, Debian bookworm's runsc 20221219 among them, refuse statx() with
 * AT_NO_AUTOMOUNT, the flag coreutils passes, with EINVAL; .ci/run installs a
 * newer one), files go in and out through the API, a session remembers its
 * earlier exchange, and an aborted tool task ends promptly with nothing of it
 * left in the sandbox.
 *
 * Processes are listed with `ps` inside the sandbox: `docker top` shows host
 * processes, and a gVisor sandbox's processes are not the host's.
 *
 * Skipped only where the Docker engine has no "runsc" runtime (.ci/run
 * installs gVisor and registers it).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { bash, rule, text, toolUse } from '../../src/scripted-model/index.ts';
import { eventually, startHarness, type Harness } from '../support/harness.ts';
import { execIn, lastToolResults, sessionContainer } from '../security/support.ts';
import { conversationOf, docker, isRunning, rawRequest, within } from '../sessions/support.ts';

const engineRuntimes = Object.keys(((await docker.info()) as { Runtimes?: Record<string, unknown> }).Runtimes ?? {});
const skip = !engineRuntimes.includes('runsc') && 'the Docker engine has no "runsc" runtime (.ci/run installs gVisor and registers it)';

/** What the agent's Bash tool reports of its sandbox; each check prints a marker line when it succeeds. */
const PROBE = [
  'dmesg | head -1',
  'echo "uid=$(id -u)"',
  'grep CapEff /proc/self/status',
  'touch /etc/probe 2>/dev/null || echo etc-read-only',
  'echo "pwd=$(pwd)"',
  'stat /workspace && echo stat-workspace-ok',
  'ls -la /workspace && echo ls-la-workspace-ok',
  'stat . >/dev/null && echo stat-cwd-ok',
  'ls -la ~ >/dev/null && echo ls-la-home-ok',
  'stat /tmp / >/dev/null && echo stat-root-tmp-ok',
].join('; ');
const UPLOADED = `uploaded-${randomBytes(6).toString('hex')}`;
const WRITTEN = `written-by-the-agent-${randomBytes(6).toString('hex')}`;
const CODE_WORD = `word-${randomBytes(4).toString('hex')}`;

/** Host processes whose command line names the container (its shim, and under gVisor its sandbox and gofer). */
function hostProcessesOf(containerId: string): string[] {
  const ps = spawnSync('ps', ['-eo', 'args='], { encoding: 'utf8' });
  return ps.stdout.split('\n').filter((line) => line.includes(containerId));
}

/** The agent user's processes in a sandbox (uid 1000), from `ps` run there (the ps itself left out); [] when it is not running. */
async function agentProcesses(containerId: string): Promise<string[]> {
  let ps: { exitCode: number | null; output: string };
  try {
    ps = await execIn(containerId, ['ps', '-eo', 'uid=,args=']);
  } catch (error) {
    if (!(await isRunning(containerId))) return []; // stopped meanwhile
    throw error;
  }
  const { exitCode, output } = ps;
  if (exitCode !== 0 && !(await isRunning(containerId))) return [];
  assert.equal(exitCode, 0, output);
  return output.split('\n').map((l) => l.trim()).filter((l) => /^1000\s/.test(l) && !/\bps -eo\b/.test(l)).map((l) => l.replace(/^1000\s+/, ''));
}

describe('gVisor sessions (SANDBOX_RUNTIME=runsc) behave like the others', { skip }, () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      env: { SANDBOX_RUNTIME: 'runsc' },
      template: { 'runner.json': { network: { mode: 'none' } } },
      rules: [
        rule('gv-probe', bash(PROBE), text('probed under gVisor')),
        rule('gv-files', toolUse('Read', { file_path: '/workspace/in/upload.txt' }),
          bash(`mkdir -p out && printf '${WRITTEN}' > out/from-agent.txt && echo wrote`), text('files done')),
        rule('gv-remember', text('Noted: I will remember the code word.')),
        rule('gv-recall', text('The code word was given earlier.')),
        rule('gv-slow-tool', bash('echo busy; sleep 60'), text('slow tool finished')),
      ],
    });
  });
  after(async () => h?.close());

  const task = (sessionId: string, message: string) => h.api('/task', { method: 'POST', json: { sessionId, message } });

  test('tools: a Bash tool call runs in a hardened gVisor sandbox, and stat / ls -la of /workspace succeed there', async () => {
    const res = await task('gv', 'gv-probe');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body.output, { response: 'probed under gVisor' });
    const container = await sessionContainer(h.runnerId, 'gv');
    assert.equal((await docker.getContainer(container!.Id).inspect()).HostConfig.Runtime, 'runsc');
    const seen = lastToolResults(h.model, 'gv-probe');
    assert.match(seen, /Starting gVisor/);
    assert.match(seen, /^uid=1000$/m);
    assert.match(seen, /CapEff:\s+0000000000000000/);
    assert.match(seen, /etc-read-only/);
    assert.match(seen, /^pwd=\/workspace$/m);
    assert.doesNotMatch(seen, /Invalid argument/, seen);
    for (const marker of ['stat-workspace-ok', 'ls-la-workspace-ok', 'stat-cwd-ok', 'ls-la-home-ok', 'stat-root-tmp-ok']) {
      assert.match(seen, new RegExp(`^${marker}$`, 'm'), `${marker} missing; the tool saw:\n${seen}`);
    }
    assert.match(seen, /File: \/workspace\n.*directory/);
  });

  test('files: an upload is read by the agent\'s Read tool, a file the agent wrote is downloaded', async () => {
    const up = await rawRequest(h.url, 'PUT', '/session/gv/files/in/upload.txt', `${UPLOADED}\n`);
    assert.equal(up.status, 201, up.body.toString());
    const res = await task('gv', 'gv-files');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body.output, { response: 'files done' });
    const seen = lastToolResults(h.model, 'gv-files');
    assert.ok(seen.includes(UPLOADED), `the Read tool did not show the uploaded file:\n${seen}`);
    assert.match(seen, /^wrote$/m);
    const down = await rawRequest(h.url, 'GET', '/session/gv/files/out/from-agent.txt');
    assert.equal(down.status, 200, down.body.toString());
    assert.equal(down.body.toString(), WRITTEN);
  });

  test('memory: the second task of a session resumes the conversation, and the model sees the earlier exchange', async () => {
    const first = await task('gv-memory', `gv-remember: the code word is ${CODE_WORD}`);
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.resumed, false);
    const second = await task('gv-memory', 'gv-recall: what was the code word?');
    assert.equal(second.status, 200, JSON.stringify(second.body));
    assert.equal(second.body.resumed, true);
    const conversation = conversationOf(h.model.findRequests({ prompt: 'gv-recall' })[0]);
    assert.ok(conversation.includes(`the code word is ${CODE_WORD}`), conversation);
    assert.ok(conversation.includes('Noted: I will remember the code word.'), conversation);
  });

  test('abort: a long-running tool task aborted through the API ends aborted promptly, and nothing it started survives', async () => {
    const running = task('gv-abort', 'gv-slow-tool');
    const containerId = await eventually(async () => {
      const c = await sessionContainer(h.runnerId, 'gv-abort');
      return c?.State === 'running' && (await agentProcesses(c.Id)).some((p) => p.includes('sleep 60')) ? c.Id : undefined;
    }, 60_000, 'the slow tool to run in the gVisor sandbox');
    const before = await agentProcesses(containerId);
    assert.ok(before.some((p) => /claude/.test(p)), `the agent runs: ${before.join(' | ')}`);
    assert.ok(hostProcessesOf(containerId).some((p) => p.startsWith('runsc-sandbox')), 'a gVisor sandbox runs the session');

    const t0 = Date.now();
    const abort = await h.api('/task/gv-abort/abort', { method: 'POST' });
    const abortMs = Date.now() - t0;
    assert.equal(abort.status, 200, JSON.stringify(abort.body));
    assert.equal(abort.body.aborted, true);
    assert.ok(abortMs < 5000, `abort took ${abortMs} ms`);
    console.log(`# gVisor: abort of a running tool: ${abortMs} ms`);
    const answer = await within(running, 6000, 'the answer to the aborted task\'s caller');
    assert.equal(answer.status, 409, JSON.stringify(answer.body));
    assert.equal(answer.body.error.code, 'TASK_ABORTED');
    assert.equal((await h.api(`/tasks/${abort.body.runningTaskId}`)).body.status, 'aborted');
    // Nothing of the agent is left: no claude, no sleep in the sandbox (an aborted task's sandbox is
    // stopped, and with it gVisor's sandbox and gofer on the host).
    assert.deepEqual(await agentProcesses(containerId), [], 'processes of the agent left in the sandbox');
    await eventually(() => (hostProcessesOf(containerId).length === 0 ? true : undefined), 5000, 'the sandbox\'s host processes to end');
    // The session stays usable.
    const again = await task('gv-abort', 'gv-remember: after the abort');
    assert.equal(again.status, 200, JSON.stringify(again.body));
  });
});
