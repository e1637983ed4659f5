/** `files ls|get|put|rm`: a session's workspace, streamed both ways (never held whole). */
import { createReadStream, createWriteStream } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Command } from 'commander';
import { clientOf, printJson } from '../context.ts';
import { colours, table } from '../output.ts';

export function fileCommands(program: Command): void {
  const files = program.command('files').description('List, download, upload and delete a session\'s workspace files');

  files
    .command('ls')
    .description('List files (recursively)')
    .argument('<session>', 'session id')
    .argument('[path]', 'a folder of the workspace')
    .option('--json', 'print JSON')
    .action(async (sessionId: string, path: string | undefined, options: { json?: boolean }, command: Command) => {
      const entries = await clientOf(command).listFiles(sessionId, path);
      if (options.json) return printJson(entries);
      const rows = entries.map((entry) => [
        entry.type === 'directory' ? colours.blue(`${entry.path}/`) : entry.path,
        entry.type,
        entry.type === 'file' ? String(entry.size) : '',
        new Date(entry.modifiedAt).toISOString(),
      ]);
      process.stdout.write(`${table(['PATH', 'TYPE', 'SIZE', 'MODIFIED'], rows)}\n`);
    });

  files
    .command('get')
    .description('Download a file to stdout, or to a file with -o')
    .argument('<session>', 'session id')
    .argument('<path>', 'file in the workspace')
    .option('-o, --output <file>', 'write to this file instead of stdout')
    .action(async (sessionId: string, path: string, options: { output?: string }, command: Command) => {
      const { stream } = await clientOf(command).downloadFile(sessionId, path);
      const target = options.output ? createWriteStream(options.output) : process.stdout;
      await pipeline(Readable.fromWeb(stream as import('node:stream/web').ReadableStream<Uint8Array>), target as Writable, { end: Boolean(options.output) });
    });

  files
    .command('put')
    .description('Upload a file (from a local file, or stdin when none or "-")')
    .argument('<session>', 'session id')
    .argument('<path>', 'where in the workspace (folders are created)')
    .argument('[file]', 'local file; stdin when absent or "-"')
    .option('--json', 'print the answer as JSON')
    .action(async (sessionId: string, path: string, file: string | undefined, options: { json?: boolean }, command: Command) => {
      const source = file && file !== '-' ? createReadStream(file) : process.stdin;
      const written = await clientOf(command).uploadFile(sessionId, path, source);
      if (options.json) printJson(written);
      else process.stdout.write(`${written.path} ${written.size} bytes\n`);
    });

  files
    .command('rm')
    .description('Delete a file or folder')
    .argument('<session>', 'session id')
    .argument('<path>', 'file or folder in the workspace')
    .action(async (sessionId: string, path: string, _options: unknown, command: Command) => {
      const deleted = await clientOf(command).deleteFile(sessionId, path);
      process.stdout.write(`${deleted.path} deleted\n`);
    });
}
