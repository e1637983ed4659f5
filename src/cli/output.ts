/**
 * How the CLI writes: colours (only on a terminal, never with NO_COLOR), a
 * spinner (only on a terminal), and stream frames as a person reads them:
 * text as it arrives, a line per tool call with its input, results
 * shortened, errors in red.
 */
import picocolors from 'picocolors';
import yoctoSpinner, { type Spinner } from 'yocto-spinner';
import type { StreamFrame } from '../client/index.ts';

function colourWanted(stream: NodeJS.WriteStream): boolean {
  if (process.env.NO_COLOR) return false;
  if (process.env.FORCE_COLOR && process.env.FORCE_COLOR !== '0') return true;
  return Boolean(stream.isTTY) && process.env.TERM !== 'dumb';
}

export const colours = picocolors.createColors(colourWanted(process.stdout));
export const errorColours = picocolors.createColors(colourWanted(process.stderr));

export const interactive = Boolean(process.stdout.isTTY && process.stderr.isTTY);

/** Cuts text to `max` characters on one line. */
export function shorten(text: string, max = 160): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length > max ? `${oneLine.slice(0, max - 1)}…` : oneLine;
}

export function printError(message: string): void {
  process.stderr.write(`${errorColours.red(errorColours.bold('error'))} ${message}\n`);
}

/** A spinner on stderr while nothing else is written; nothing at all when not interactive. */
export class Activity {
  private spinner: Spinner | undefined;

  start(text: string): void {
    if (!interactive) return;
    if (this.spinner) {
      this.spinner.text = text;
      return;
    }
    this.spinner = yoctoSpinner({ text, handleSignals: false }).start();
  }

  stop(): void {
    this.spinner?.stop();
    this.spinner = undefined;
  }
}

function toolInput(input: unknown): string {
  if (input && typeof input === 'object') {
    const { command, description: _description, ...rest } = input as Record<string, unknown>;
    if (typeof command === 'string') return Object.keys(rest).length > 0 ? `${command} ${JSON.stringify(rest)}` : command;
  }
  return JSON.stringify(input) ?? '';
}

/**
 * Renders frames of one stream. `tail` prefixes each event with its seq;
 * `task` streams text inline. The spinner runs while the agent works
 * between visible output.
 */
export class FrameRenderer {
  private midLine = false;
  private readonly activity = new Activity();

  private readonly options: { showSeq: boolean };

  constructor(options: { showSeq: boolean } = { showSeq: false }) {
    this.options = options;
  }

  render(frame: StreamFrame): void {
    const c = colours;
    const seq = this.options.showSeq && 'seq' in frame ? c.dim(`#${frame.seq} `) : '';
    switch (frame.type) {
      case 'connected':
        if ('status' in frame && frame.status) this.activity.start(`task ${frame.status}`);
        return;
      case 'text':
        this.activity.stop();
        if (this.options.showSeq) return this.line(`${seq}${frame.text}`);
        process.stdout.write(frame.text);
        this.midLine = !frame.text.endsWith('\n');
        return;
      case 'thinking':
        this.activity.start('thinking');
        if (this.options.showSeq) this.line(`${seq}${c.dim(`thinking ${shorten(frame.text)}`)}`);
        return;
      case 'task_queued':
        this.line(`${seq}${c.dim(`queued${frame.position > 0 ? ` (${frame.position} before it)` : ''} ${frame.taskId}`)}`);
        this.activity.start('queued');
        return;
      case 'task_start':
        this.line(`${seq}${c.dim(`started${frame.resumed ? ' (resumed conversation)' : ''}`)}`);
        this.activity.start('starting the agent');
        return;
      case 'init':
        this.line(`${seq}${c.dim(`agent ${frame.model}`)}`);
        this.activity.start('working');
        return;
      case 'tool_start':
        this.line(`${seq}${c.cyan(`▸ ${frame.tool}`)} ${shorten(toolInput(frame.input), 200)}`);
        this.activity.start(`running ${frame.tool}`);
        return;
      case 'tool_end': {
        const result = shorten(frame.result, 160) || '(no output)';
        this.line(`${seq}  ${frame.isError ? c.red(`✖ ${result}`) : c.dim(`↳ ${result}`)}`);
        this.activity.start('working');
        return;
      }
      case 'usage':
        if (this.options.showSeq) this.line(`${seq}${c.dim(`usage ${frame.inputTokens}+${frame.outputTokens} tokens $${frame.costUsd.toFixed(4)}`)}`);
        return;
      case 'egress_refused':
        this.line(`${seq}${c.yellow(`network refused ${frame.host}:${frame.port} (${frame.reason})`)}`);
        return;
      case 'abort':
        this.line(`${seq}${c.yellow('aborted')}`);
        return;
      case 'task_complete':
        this.line(`${seq}${c.green(`✔ task ${frame.taskId} succeeded`)} ${c.dim(summary(frame.duration, frame.cost, frame.tools))}`);
        return;
      case 'task_error':
        this.line(`${seq}${c.red(`✖ task ${frame.taskId} ${frame.status}: ${frame.error.code} ${frame.error.message}`)}`);
        return;
      case 'session_reset':
        this.line(`${seq}${c.yellow('session reset')}`);
        return;
      case 'gap':
        this.line(c.dim(`… events ${frame.fromSeq}–${frame.toSeq} were dropped by retention`));
        return;
      case 'error':
        this.line(c.red(`stream error ${frame.error.code}: ${frame.error.message} (reconnecting)`));
        return;
      default:
        return;
    }
  }

  /** Stops the spinner and ends a line left open by streamed text. */
  finish(): void {
    this.activity.stop();
    if (this.midLine) process.stdout.write('\n');
    this.midLine = false;
  }

  private line(text: string): void {
    this.activity.stop();
    if (this.midLine) process.stdout.write('\n');
    this.midLine = false;
    process.stdout.write(`${text}\n`);
  }
}

export function summary(durationMs: number, costUsd: number, tools: string[]): string {
  return `${(durationMs / 1000).toFixed(1)} s · $${costUsd.toFixed(4)}${tools.length > 0 ? ` · tools: ${tools.join(', ')}` : ''}`;
}

/** A table of rows, columns padded; the header dimmed. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const format = (row: string[]) => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd();
  return [colours.dim(format(header)), ...rows.map(format)].join('\n');
}
