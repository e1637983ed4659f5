/**
 * `npm run demo`: the whole product on one machine with no API key. Starts the
 * scripted model (examples/support-bot/script.json), the mock Acme API, and
 * Claude Runner with the support-bot agent; then sends the seed's example task
 * while printing the live events, and keeps everything running so you can try
 * your own requests (Ctrl-C stops it all). `npm run demo -- --once` exits after
 * the example task.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { WebSocket } from 'ws';
import { startMockAcmeApi } from '../examples/support-bot/mock-api.ts';
import { createRunner } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { parseJsonScript, startScriptedModel } from '../src/scripted-model/index.ts';

const root = resolve(import.meta.dirname, '..');
const once = process.argv.includes('--once');
const ACME_TOKEN = 'acme-demo-token';
const DEMO_KEY = 'sk-ant-demo-not-a-real-key';

const script = parseJsonScript(JSON.parse(readFileSync(join(root, 'examples/support-bot/script.json'), 'utf8')));
const model = await startScriptedModel({ ...script, requireApiKey: DEMO_KEY });
const api = await startMockAcmeApi({ port: 3457, token: ACME_TOKEN });
const runner = await createRunner(loadConfig({
  PORT: process.env.PORT ?? '3456',
  DATA_DIR: join(root, 'data/demo'),
  AGENT_DIR: join(root, 'examples/support-bot/agent'),
  ANTHROPIC_BASE_URL: model.url,
  ANTHROPIC_API_KEY: DEMO_KEY,
  MODEL_MAX_RETRIES: '0',
  LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
}));
const url = (await runner.start()).replace('0.0.0.0', '127.0.0.1');
console.log(`scripted model ${model.url}\nmock Acme API   http://127.0.0.1:${api.port}\nClaude Runner   ${url}\n`);

const stop = async (): Promise<void> => {
  await runner.shutdown();
  await api.close();
  await model.close();
};

const sessionId = `demo-${Date.now().toString(36)}`;
const ws = new WebSocket(`${url.replace('http', 'ws')}/stream/${sessionId}`);
ws.on('message', (data) => {
  const event = JSON.parse(String(data));
  const detail = event.type === 'text' || event.type === 'thinking' ? JSON.stringify(event.text)
    : event.type === 'tool_start' ? `${event.tool} ${JSON.stringify(event.input)}`
    : event.type === 'tool_end' ? event.result.slice(0, 120)
    : '';
  console.log(`  ws #${event.seq ?? '-'} ${event.type} ${detail}`);
});
await new Promise((r) => ws.once('open', r));

const body = {
  sessionId,
  message: 'Look up my account, email is alice@startup.io',
  context: 'Channel: web-chat',
  env: { ACME_API_URL: `http://host.docker.internal:${api.port}`, ACME_API_TOKEN: ACME_TOKEN },
};
console.log(`POST /task ${JSON.stringify(body)}\n`);
const response = await fetch(`${url}/task`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
console.log(`\n${response.status} ${JSON.stringify(await response.json(), null, 2)}\n`);
ws.close();

if (once) {
  await stop();
  process.exit(0);
}
console.log(`Try it yourself:\n  curl -s -X POST ${url}/task -H 'content-type: application/json' \\\n    -d '{"sessionId":"me","message":"Hi, I am alice@startup.io","env":{"ACME_API_URL":"http://host.docker.internal:${api.port}","ACME_API_TOKEN":"${ACME_TOKEN}"}}'\n  websocat ${url.replace('http', 'ws')}/stream/me   (or: curl -N ${url}/session/me/events)\nCtrl-C stops everything.`);
process.on('SIGINT', () => void stop().then(() => process.exit(0)));
process.on('SIGTERM', () => void stop().then(() => process.exit(0)));
