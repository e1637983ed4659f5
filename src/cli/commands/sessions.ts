/** `sessions`, `session <id>`, `tail <session>`, `reset`, `delete`. */
import { Command } from 'commander';
import type { SessionView } from '../../client/index.ts';
import { clientOf, EXIT, ExitCode, interruptSignal, parseInteger, printJson } from '../context.ts';
import { colours, FrameRenderer, table } from '../output.ts';

function sessionRow(session: SessionView): string[] {
  return [session.sessionId, session.agent, session.state, String(session.turns), `$${session.totalCost.toFixed(4)}`, session.lastActivity ?? '-'];
}

export function sessionCommands(program: Command): void {
  program
    .command('sessions')
    .description('List sessions')
    .option('--limit <n>', 'at most this many', parseInteger)
    .option('--cursor <cursor>', 'the next page (printed after a full page)')
    .option('--json', 'print JSON: {sessions, nextCursor}')
    .action(async (options: { limit?: number; cursor?: string; json?: boolean }, command: Command) => {
      const page = await clientOf(command).listSessions({ limit: options.limit, cursor: options.cursor });
      if (options.json) return printJson(page);
      if (page.sessions.length === 0) process.stdout.write(colours.dim('No sessions.\n'));
      else process.stdout.write(`${table(['SESSION', 'AGENT', 'STATE', 'TURNS', 'COST', 'LAST ACTIVITY'], page.sessions.map(sessionRow))}\n`);
      if (page.nextCursor) process.stdout.write(colours.dim(`More: --cursor ${page.nextCursor}\n`));
    });

  program
    .command('session')
    .description('Show a session and its latest tasks')
    .argument('<id>', 'session id')
    .option('--json', 'print JSON: {session, tasks}')
    .action(async (sessionId: string, options: { json?: boolean }, command: Command) => {
      const client = clientOf(command);
      const [session, page] = await Promise.all([client.getSession(sessionId), client.listTasks(sessionId, { limit: 10 })]);
      if (options.json) return printJson({ session, tasks: page.tasks });
      process.stdout.write(`${table(['SESSION', 'AGENT', 'STATE', 'TURNS', 'COST', 'LAST ACTIVITY'], [sessionRow(session)])}\n`);
      process.stdout.write(colours.dim(`queue ${session.queueDepth} · live agent ${session.agentLive ? 'yes' : 'no'} · created ${session.createdAt}\n\n`));
      const rows = page.tasks.map((task) => [task.taskId, task.status, `${(task.duration / 1000).toFixed(1)} s`, `$${task.cost.toFixed(4)}`, task.createdAt, task.message.replace(/\s+/g, ' ').slice(0, 50)]);
      if (rows.length > 0) process.stdout.write(`${table(['TASK', 'STATUS', 'DURATION', 'COST', 'CREATED', 'MESSAGE'], rows)}\n`);
    });

  program
    .command('tail')
    .description('Follow a session\'s events live (reconnects by itself; Ctrl-C stops)')
    .argument('<session>', 'session id')
    .option('--after <seq>', 'start after this seq (0: the whole stored log)', parseInteger)
    .option('--json', 'one JSON frame a line')
    .action(async (sessionId: string, options: { after?: number; json?: boolean }, command: Command) => {
      const signal = interruptSignal();
      const renderer = new FrameRenderer({ showSeq: true });
      const events = clientOf(command).sessionEvents(sessionId, { ...(options.after !== undefined ? { after: options.after } : {}), signal });
      for await (const frame of events) {
        if (options.json) process.stdout.write(`${JSON.stringify(frame)}\n`);
        else if (frame.type === 'connected') process.stdout.write(colours.dim(`connected to ${sessionId}: events after #${frame.after}\n`));
        else renderer.render(frame);
      }
      renderer.finish();
      throw new ExitCode(EXIT.interrupted);
    });

  program
    .command('reset')
    .description('Reset a session: workspace back to its template, conversation forgotten')
    .argument('<session>', 'session id')
    .option('--json', 'print the answer as JSON')
    .action(async (sessionId: string, options: { json?: boolean }, command: Command) => {
      const reset = await clientOf(command).resetSession(sessionId);
      if (options.json) printJson(reset);
      else process.stdout.write(`${reset.sessionId} reset\n`);
    });

  program
    .command('delete')
    .description('Delete a session: its tasks stop; its sandbox, files and events go')
    .argument('<session>', 'session id')
    .option('--json', 'print the answer as JSON')
    .action(async (sessionId: string, options: { json?: boolean }, command: Command) => {
      const deleted = await clientOf(command).deleteSession(sessionId);
      if (options.json) printJson(deleted);
      else process.stdout.write(`${deleted.sessionId} deleted\n`);
    });
}
