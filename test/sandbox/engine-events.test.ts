/**
 * The engine event stream of the Docker driver (engine-events.ts), fed by a
 * fake engine: what it asks for, JSON lines split across chunks, lines that
 * are not its events, a reopen after the stream ends (its replay delivered
 * once), and the stream closed with the last subscription.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { EngineEvents, type EngineEvent } from '../../src/sandbox/docker/engine-events.ts';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

function fakeEngine(): { docker: Docker; opened: Array<{ options: Record<string, unknown>; stream: PassThrough }> } {
  const opened: Array<{ options: Record<string, unknown>; stream: PassThrough }> = [];
  const docker = {
    getEvents: async (options: Record<string, unknown>) => {
      const stream = new PassThrough();
      opened.push({ options, stream });
      return stream;
    },
  } as unknown as Docker;
  return { docker, opened };
}

function line(id: string, action: string, timeNano: number, exitCode?: string): string {
  const Attributes: Record<string, string> = { name: 'x', ...(exitCode === undefined ? {} : { exitCode }) };
  return `${JSON.stringify({ status: action, id, Type: 'container', Action: action, Actor: { ID: id, Attributes }, time: Math.floor(timeNano / 1e9), timeNano })}\n`;
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await sleep(10);
  assert.ok(check(), what);
}

test('one stream, JSON lines split across chunks, other lines ignored, a reopen replays once, closed with the last subscription', { timeout: 10_000 }, async () => {
  const engine = fakeEngine();
  const events = new EngineEvents(engine.docker, 'r1', quiet);
  const seen: EngineEvent[] = [];
  const before = Date.now();
  const unsubscribe = events.subscribe('c1', (event) => seen.push(event));
  const unsubscribeOther = events.subscribe('c3', () => {});
  await until(() => engine.opened.length === 1, 'one stream opened');
  const { options, stream } = engine.opened[0]!;
  assert.deepEqual(options.filters, { type: ['container'], event: ['oom', 'die'], label: ['dev.claude-runner.instance=r1'] });
  assert.ok(Math.abs(Number(options.since) * 1000 - before) < 1000, String(options.since));

  const now = Date.now() * 1e6;
  const old = line('c1', 'die', now - 60e9, '1'); // before the subscription: not its
  const die = line('c1', 'die', now + 1e6, '3');
  stream.write(old + die.slice(0, 25));
  await sleep(20);
  stream.write(die.slice(25) + line('c2', 'oom', now + 2e6) + 'not json\n' + line('c1', 'exec_die', now + 3e6, '0'));
  await until(() => seen.length === 1, 'the die of c1');
  assert.deepEqual(seen, [{ action: 'die', exitCode: 3 }]);

  // The stream ends: another one opens, from before it dropped; what was delivered is not again.
  stream.end();
  await until(() => engine.opened.length === 2, 'reopened');
  const second = engine.opened[1]!.stream;
  second.write(die + line('c1', 'oom', now + 4e6));
  await until(() => seen.length === 2, 'the oom after the reopen');
  await sleep(50);
  assert.deepEqual(seen, [{ action: 'die', exitCode: 3 }, { action: 'oom', exitCode: null }]);

  unsubscribe();
  assert.equal(second.destroyed, false, 'still a subscription');
  unsubscribeOther();
  assert.equal(second.destroyed, true, 'closed with the last one');
  await sleep(400);
  assert.equal(engine.opened.length, 2, 'not reopened');
});
