// Runs the scripted model as a stand-alone server:
//   node src/scripted-model/cli.ts --port 8080 --script script.json
import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { parseJsonScript } from './script-json.ts';
import { startScriptedModel } from './server.ts';
import type { ScriptedModelOptions } from './server.ts';

function port(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be an integer 0..65535');
  return n;
}

const program = new Command()
  .name('scripted-model')
  .description('A scripted Anthropic Messages API server for offline, deterministic Claude Code runs.')
  .option('-p, --port <port>', 'port to listen on (0 = random)', port, 0)
  .option('-H, --host <host>', 'address to bind', '127.0.0.1')
  .option('-s, --script <file>', 'JSON script: {rules, defaultReply?, sideReply?} or an array of rules')
  .option('--require-api-key <key>', 'reject /v1 requests that carry another API key')
  .parse();

const o = program.opts<{ port: number; host: string; script?: string; requireApiKey?: string }>();
const options: ScriptedModelOptions = { port: o.port, host: o.host };
if (o.requireApiKey !== undefined) options.requireApiKey = o.requireApiKey;
if (o.script !== undefined) {
  try {
    const s = parseJsonScript(JSON.parse(readFileSync(o.script, 'utf8')));
    options.rules = s.rules;
    if (s.defaultReply) options.defaultReply = s.defaultReply;
    if (s.sideReply) options.sideReply = s.sideReply;
  } catch (err) {
    console.error(`scripted-model: ${o.script}: ${(err as Error).message}`);
    process.exit(2);
  }
}

const model = await startScriptedModel(options);
console.log(model.url);
const stop = () => {
  model.close().finally(() => process.exit(0));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
