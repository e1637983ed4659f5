/**
 * A throwaway PostgreSQL server for tests: its own cluster (initdb) in a temp
 * folder, listening on 127.0.0.1 at a free port and on a unix socket in that
 * folder, stopped and removed by stop() (or when the test process ends). Start
 * one per test file and create a database per test: a cluster takes about a
 * second, a database a tenth of that (and the next one is made ahead).
 *
 *   const pg = await startPostgres();
 *   const url = await pg.createDatabase();   // postgres://postgres@127.0.0.1:<port>/<fresh db>
 *   await pg.stop();
 *
 * The binaries (initdb, postgres) come from PATH or /usr/lib/postgresql/<version>/bin
 * (Debian's postgresql package; .ci/run installs it). PostgreSQL refuses to run
 * as root: as root, initdb and the server run as the `postgres` user (spawned
 * with its uid and gid, as `runuser -u postgres` would, but with no process in
 * between, so a signal to the server's pid reaches the server).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, chownSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import pg from 'pg';

export interface TestPostgres {
  /** URL of a database of this server (default: `postgres`, the maintenance database). */
  url(database?: string): string;
  /** Creates a new database, empty or a copy of `template` (a database of this server nobody is connected to); returns its URL. */
  createDatabase(options?: { template?: string }): Promise<string>;
  /** Stops the server and removes its files. */
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
const START_ATTEMPTS = 3;

/** The folder holding initdb and postgres: PATH first, then Debian's versioned folders, newest first. */
export function findPostgresBin(): string | undefined {
  const hasBoth = (dir: string) => existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'postgres'));
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && hasBoth(dir)) return dir;
  }
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).filter((v) => /^\d+(\.\d+)?$/.test(v)).sort((a, b) => Number(b) - Number(a));
  return versions.map((v) => join(root, v, 'bin')).find(hasBoth);
}

/** As root: the postgres user's ids, to run the server as (it refuses root). Otherwise: run as ourselves. */
function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    throw new Error('Running as root, PostgreSQL needs a `postgres` user to run as (Debian\'s postgresql package creates it).');
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (!address || typeof address === 'string') throw new Error('no port');
  return address.port;
}

function run(bin: string, args: string[], options: { cwd: string; user: { uid: number; gid: number } | undefined }): ChildProcess {
  return spawn(bin, args, {
    cwd: options.cwd,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C', TZ: 'UTC' },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(options.user ?? {}),
  });
}

/** The last 8 KB a child wrote, to say why it failed. */
function captureOutput(child: ChildProcess): () => string {
  let out = '';
  const keep = (chunk: Buffer) => { out = (out + chunk.toString()).slice(-8192); };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return () => out;
}

async function initdb(bin: string, dir: string, user: { uid: number; gid: number } | undefined): Promise<void> {
  // trust: the server listens on loopback and a socket in a 0700 folder; -N: no fsync, the cluster is thrown away.
  const child = run(join(bin, 'initdb'), ['-D', join(dir, 'data'), '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '-N'], { cwd: dir, user });
  const output = captureOutput(child);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`initdb failed (${code}):\n${output()}`);
}

async function waitReady(url: string, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`postgres exited (${child.exitCode ?? child.signalCode}):\n${output()}`);
    const client = new pg.Client({ connectionString: url });
    try {
      await client.connect();
      await client.query('select 1');
      return;
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`postgres did not accept connections in ${READY_TIMEOUT_MS} ms (${String(error)}):\n${output()}`);
    } finally {
      await client.end().catch(() => undefined);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function startServer(bin: string, dir: string, port: number, user: { uid: number; gid: number } | undefined): { child: ChildProcess; output: () => string } {
  const child = run(join(bin, 'postgres'), [
    '-D', join(dir, 'data'), '-p', String(port), '-k', dir,
    '-c', 'listen_addresses=127.0.0.1',
    // Tests only: no fsync and no full-page writes (a crash loses the cluster, which is thrown away anyway).
    '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
    '-c', 'max_connections=300', '-c', 'shared_buffers=64MB',
  ], { cwd: dir, user });
  return { child, output: captureOutput(child) };
}

/**
 * Ends the server and removes its files once the test process is gone, however it ended (a crash, a
 * signal, no stop()): it waits on a pipe from this process, which the kernel closes when the process dies.
 */
function watchdog(serverPid: number, dir: string): ChildProcess {
  const script = 'read _line; kill -QUIT "$1" 2>/dev/null; sleep 1; rm -rf "$2"';
  const child = spawn('sh', ['-c', script, 'postgres-watchdog', String(serverPid), dir], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
  unref(child);
  return child;
}

/** Neither the process nor its pipes keep the test process alive. */
function unref(child: ChildProcess): void {
  child.unref();
  for (const stream of [child.stdin, child.stdout, child.stderr]) (stream as unknown as { unref?: () => void } | null)?.unref?.();
}

async function stopServer(server: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (server.exitCode !== null || server.signalCode !== null) return;
  const exited = new Promise((resolve) => server.once('exit', resolve));
  server.kill(signal);
  const timer = setTimeout(() => server.kill('SIGQUIT'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

export async function startPostgres(): Promise<TestPostgres> {
  const bin = findPostgresBin();
  if (!bin) throw new Error('PostgreSQL is not installed (no initdb and postgres on PATH or in /usr/lib/postgresql/*/bin): install Debian\'s postgresql package, or run .ci/run.');
  const user = serverUser();
  const dir = mkdtempSync(join(tmpdir(), 'runner-pg-'));
  let server: ChildProcess | undefined;
  let port = 0;
  try {
    if (user) chownSync(dir, user.uid, user.gid);
    await initdb(bin, dir, user);
    for (let attempt = 1; !server; attempt++) {
      port = await freePort();
      const started = startServer(bin, dir, port, user);
      try {
        await waitReady(`postgres://postgres@127.0.0.1:${port}/postgres`, started.child, started.output);
        server = started.child;
      } catch (error) {
        // The port may have been taken between freePort and the server's bind: another one.
        await stopServer(started.child, 'SIGQUIT');
        if (attempt >= START_ATTEMPTS) throw error;
      }
    }
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  unref(server);
  const guard = watchdog(server.pid!, dir);
  const running = server;

  const url = (database = 'postgres'): string => `postgres://postgres@127.0.0.1:${port}/${encodeURIComponent(database)}`;
  let databases = 0;
  const create = async (template?: string): Promise<string> => {
    const name = `test_${process.pid}_${++databases}`;
    const admin = new pg.Client({ connectionString: url() });
    await admin.connect();
    try {
      await admin.query(`create database "${name}"${template ? ` template "${template.replaceAll('"', '""')}"` : ''}`);
    } finally {
      await admin.end();
    }
    return url(name);
  };
  // The next database of the same kind is made while the test that asked for this one runs.
  const ahead = new Map<string, Promise<string>>();
  let stopping: Promise<void> | undefined;
  return {
    url,
    async createDatabase(options = {}) {
      const kind = options.template ?? '';
      const next = ahead.get(kind) ?? create(options.template);
      const following = create(options.template);
      following.catch(() => undefined); // its failure is the next caller's
      ahead.set(kind, following);
      return next;
    },
    stop() {
      stopping ??= (async () => {
        await Promise.allSettled(ahead.values());
        guard.kill('SIGKILL');
        // Fast shutdown: clients still connected are disconnected.
        await stopServer(running, 'SIGINT');
        rmSync(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}
