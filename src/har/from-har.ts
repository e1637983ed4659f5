/**
 * `claude-runner tools from-har`: a HAR recording of a product's web UI in,
 * agent tools out. The recording is redacted here, on the operator's side,
 * then converted by the built-in `har-to-tools` agent (templates/har-to-tools,
 * no network) in a session of its own, through the runner's public API; the
 * scripts and AGENTS.md section it writes are checked, then written into the
 * target template (or shown as a diff), and the session is deleted.
 *
 * Owns: src/har/ (redaction, the conversion flow, the checks on its output).
 * Must not touch: the runner's internals (only the HTTP client), src/cli
 * (which calls toolsFromHar), or any file of the target template but
 * tools/<generated>.sh and AGENTS.md's marked section.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { ClaudeRunnerClient, StreamFrame } from '../client/index.ts';
import {
  checkProduced, markGenerated, mergeSection, OUT_SECTION, OUT_TOOLS, pickOutputPaths, templateTools,
  unifiedDiff, withoutSection, writePlanned, type PlannedFile, type ProducedFiles,
} from './agent-files.ts';
import { HarError, parseHar, redactHar, type Har } from './redact.ts';

export { HarError } from './redact.ts';

/** The built-in template that does the conversion, and where its inputs go in the session. */
export const HAR_AGENT = 'har-to-tools';
export const INPUT_HAR = 'input/recording.har';
export const INPUT_TOOLS = 'input/existing-tools.txt';
export const INPUT_AGENTS = 'input/existing-AGENTS.md';

export interface ToolsFromHarOptions {
  harPath: string;
  agentDir: string;
  dryRun: boolean;
  keepSecrets?: boolean;
  client: ClaudeRunnerClient;
  onFrame?: (frame: StreamFrame) => void;
  sessionId?: string;
}

export interface ToolsFromHarResult {
  files: { path: string; mode: number }[];
  diff: string;
  written: boolean;
  redactions: number;
  sessionId: string;
  taskId: string;
}

function readHar(harPath: string): Har {
  let text: string;
  try {
    text = readFileSync(harPath, 'utf8');
  } catch (error) {
    throw new HarError(`cannot read ${harPath}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  return parseHar(text, harPath);
}

function checkAgentDir(agentDir: string): void {
  if (!existsSync(agentDir) || !statSync(agentDir).isDirectory()) throw new HarError(`--agent ${agentDir} is not a folder`);
  if (existsSync(join(agentDir, 'AGENTS.md'))) return;
  // A folder of templates (AGENT_DIR's other layout): the tools belong to one of them.
  const templates = readdirSync(agentDir).filter((entry) => existsSync(join(agentDir, entry, 'AGENTS.md')));
  if (templates.length > 0) throw new HarError(`--agent ${agentDir} is a folder of templates (${templates.join(', ')}): name the one the tools are for`);
}

/** The scheme://host[:port] of every request: a script that contains one hard-codes the product's address. */
function productOrigins(har: Har): string[] {
  const origins = new Set<string>();
  for (const entry of har.log.entries) {
    try {
      const url = new URL(entry.request.url);
      if (url.protocol === 'http:' || url.protocol === 'https:') origins.add(url.host);
    } catch {
      // not a URL: nothing to look for
    }
  }
  return [...origins];
}

function conversionMessage(harName: string, existing: string[], redactions: number, keepSecrets: boolean): string {
  return [
    `Turn the HAR recording ${INPUT_HAR} (recorded as ${harName}) into agent tools, as your instructions say:`,
    `scripts in ${OUT_TOOLS}<name>.sh and their documentation in ${OUT_SECTION}.`,
    existing.length > 0
      ? `The target agent already has these tools; do not reuse their names: ${existing.join(', ')} (also in ${INPUT_TOOLS}).`
      : `The target agent has no tools yet (${INPUT_TOOLS} is empty).`,
    `Its current instructions are in ${INPUT_AGENTS}.`,
    keepSecrets
      ? 'The recording still holds its credentials: never copy one into a file; read them from environment variables.'
      : `${redactions} credential value(s) were replaced by <redacted:...> placeholders: read those from environment variables.`,
  ].join('\n');
}

/** Runs the conversion task, following its events; answers its id, or throws with the task's error. */
async function runConversion(client: ClaudeRunnerClient, sessionId: string, message: string, onFrame?: (frame: StreamFrame) => void): Promise<string> {
  const { taskId } = await client.submitTask({ sessionId, agent: HAR_AGENT, message });
  for await (const frame of client.taskEvents(taskId)) onFrame?.(frame);
  const task = await client.getTask(taskId);
  if (task.status !== 'succeeded') {
    const reason = task.error ? `${task.error.code}: ${task.error.message}` : task.status;
    throw new HarError(`the conversion task ${taskId} ended ${task.status} (${reason})`, 'CONVERSION_FAILED');
  }
  return taskId;
}

/**
 * A session of har-to-tools that exists before its task runs, so the inputs
 * are in its workspace when the agent starts: the API creates sessions with
 * their first task only, so a placeholder task is queued and aborted at once.
 */
async function openSession(client: ClaudeRunnerClient, sessionId: string): Promise<void> {
  const { taskId } = await client.submitTask({ sessionId, agent: HAR_AGENT, message: 'Inputs are being uploaded: do nothing.', maxTurns: 1 });
  await client.abortTask(taskId).catch(() => undefined); // it may have ended already: either way the session exists
}

async function downloadProduced(client: ClaudeRunnerClient, sessionId: string): Promise<ProducedFiles> {
  const paths = pickOutputPaths(await client.listFiles(sessionId, 'out').catch((error: unknown) => {
    if ((error as { code?: string }).code === 'FILE_NOT_FOUND') return [];
    throw error;
  }));
  const text = async (path: string) => new TextDecoder('utf-8', { fatal: false }).decode(await client.readFile(sessionId, path));
  const tools = await Promise.all(paths.tools.map(async (path) => ({ name: path.slice(OUT_TOOLS.length), text: await text(path) })));
  return { tools, section: await text(paths.section) };
}

export async function toolsFromHar(options: ToolsFromHarOptions): Promise<ToolsFromHarResult> {
  const { client, agentDir, dryRun } = options;
  const keepSecrets = options.keepSecrets ?? false;
  const har = readHar(options.harPath);
  checkAgentDir(agentDir);
  const { har: sent, redactions, secrets } = redactHar(har, { keepSecrets });
  const agentsPath = join(agentDir, 'AGENTS.md');
  const agentsMd = existsSync(agentsPath) ? readFileSync(agentsPath, 'utf8') : '';
  const tools = templateTools(agentDir);

  const sessionId = options.sessionId ?? `har-to-tools-${randomBytes(6).toString('hex')}`;
  let taskId = '';
  let produced: ProducedFiles;
  try {
    await openSession(client, sessionId);
    await client.uploadFile(sessionId, INPUT_HAR, JSON.stringify(sent, null, 1));
    await client.uploadFile(sessionId, INPUT_TOOLS, tools.own.map((name) => `${name}\n`).join(''));
    // Without the section an earlier run wrote: those tools are being regenerated.
    await client.uploadFile(sessionId, INPUT_AGENTS, withoutSection(agentsMd));
    taskId = await runConversion(client, sessionId, conversionMessage(basename(options.harPath), tools.own, redactions, keepSecrets), options.onFrame);
    produced = await downloadProduced(client, sessionId);
  } finally {
    await client.deleteSession(sessionId).catch(() => undefined);
  }

  checkProduced(produced, secrets, productOrigins(har), tools.own);
  const planned: PlannedFile[] = [
    ...produced.tools.map((tool) => ({ path: `tools/${tool.name}`, text: markGenerated(tool.text), mode: 0o755 })),
    { path: 'AGENTS.md', text: mergeSection(agentsMd, produced.section), mode: 0o644 },
  ];
  const diff = await unifiedDiff(agentDir, planned);
  if (!dryRun) writePlanned(agentDir, planned);
  return { files: planned.map(({ path, mode }) => ({ path, mode })), diff, written: !dryRun, redactions, sessionId, taskId };
}
