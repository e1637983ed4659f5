/**
 * The redactor, the one place secrets are taken out of text: whole values,
 * values split across streamed pieces at any point, errors and header
 * objects that a log line may carry.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { AgentEventRedactor, REDACTED, Redactor, StreamRedactor } from '../../src/secrets/redactor.ts';

const SECRET = 'acme-secret-token-42';
const OTHER = 'sk-ant-0123456789';

function redactorWith(...secrets: string[]): Redactor {
  const redactor = new Redactor();
  redactor.add('session-a', ...secrets);
  return redactor;
}

/** Streams text in the given pieces; returns what came out, joined. */
function streamed(redactor: Redactor, watched: string[], pieces: string[]): string {
  const stream = new StreamRedactor(redactor, watched, 'session-a');
  return pieces.map((p) => stream.push(p)).join('') + stream.flush();
}

describe('stream redaction', () => {
  test('a secret split at every possible point, in two and in many pieces, never comes out', () => {
    const redactor = redactorWith(SECRET, OTHER);
    const text = `before ${SECRET} middle ${OTHER}${SECRET} after`;
    const expected = `before ${REDACTED} middle ${REDACTED}${REDACTED} after`;
    for (let cut = 0; cut <= text.length; cut++) {
      assert.equal(streamed(redactor, [SECRET, OTHER], [text.slice(0, cut), text.slice(cut)]), expected, `cut at ${cut}`);
    }
    for (const size of [1, 2, 3, 7, 8, 16]) {
      const pieces = text.match(new RegExp(`[\\s\\S]{1,${size}}`, 'g'))!;
      assert.equal(streamed(redactor, [SECRET, OTHER], pieces), expected, `pieces of ${size}`);
    }
  });

  test('only what could still become a secret is held back', () => {
    const redactor = redactorWith(SECRET);
    const stream = new StreamRedactor(redactor, [SECRET], 'session-a');
    assert.equal(stream.push('hello '), 'hello ');
    assert.equal(stream.push('world acme-sec'), 'world ');
    assert.equal(stream.push('ond'), 'acme-second');
    assert.equal(stream.push(' acme-secret-tok'), ' ');
    assert.equal(stream.push('en-42!'), `${REDACTED}!`);
    assert.equal(stream.flush(), '');
  });

  test('overlapping and self-overlapping secrets', () => {
    const redactor = redactorWith('abcabd', 'cabdxy');
    const text = 'zzabcabcabdxyzz';
    for (let size = 1; size <= 4; size++) {
      const pieces = text.match(new RegExp(`.{1,${size}}`, 'g'))!;
      const out = streamed(redactor, ['abcabd', 'cabdxy'], pieces);
      assert.ok(!out.includes('abcabd') && !out.includes('cabdxy'), out);
      assert.ok(out.startsWith('zzabc') && out.endsWith('zz'), out);
    }
  });

  test('a hostile text costs linear time, even against a long secret', () => {
    const long = `${'a'.repeat(32 * 1024 - 1)}b`;
    const redactor = redactorWith(long);
    const stream = new StreamRedactor(redactor, [long], 'session-a');
    const started = performance.now();
    let out = '';
    for (let i = 0; i < 8 * 1024; i++) out += stream.push('aaaaaaaa');
    out += stream.flush();
    assert.ok(performance.now() - started < 2000, `${Math.round(performance.now() - started)} ms`);
    assert.equal(out.length, 64 * 1024);
  });

  test('agent events: deltas of text and thinking go through their own streams; other events flush them first', () => {
    const redactor = redactorWith(SECRET);
    const events = new AgentEventRedactor(redactor, [SECRET], 'session-a');
    const out = [
      ...events.events({ type: 'text', data: { text: 'key: acme-sec' } }),
      ...events.events({ type: 'thinking', data: { text: 'hmm acme-' } }),
      ...events.events({ type: 'text', data: { text: 'ret-token-42.' } }),
      ...events.events({ type: 'tool_start', data: { tool: 'Bash', input: {}, toolUseId: 't1' } }),
      ...events.events({ type: 'thinking', data: { text: 'secret-token-42' } }),
      ...events.flush(),
    ];
    assert.deepEqual(out, [
      { type: 'text', data: { text: 'key: ' } },
      { type: 'thinking', data: { text: 'hmm ' } },
      { type: 'text', data: { text: `${REDACTED}.` } },
      // What the thinking held back goes out before the tool call: it did not become a secret there.
      { type: 'thinking', data: { text: 'acme-' } },
      { type: 'tool_start', data: { tool: 'Bash', input: {}, toolUseId: 't1' } },
      { type: 'thinking', data: { text: 'secret-token-42' } },
    ]);
  });
});

describe('tool results cut short', () => {
  test('a result cut through a secret does not give out its first part', () => {
    const redactor = redactorWith(SECRET);
    const events = new AgentEventRedactor(redactor, [SECRET], 'session-a');
    const cutThrough = `${'x'.repeat(100)}${SECRET.slice(0, 12)}…[truncated]`;
    const [out] = events.events({ type: 'tool_end', data: { tool: 'Bash', result: cutThrough, toolUseId: 't', isError: false } });
    assert.deepEqual(out, { type: 'tool_end', data: { tool: 'Bash', result: `${'x'.repeat(100)}${REDACTED}…[truncated]`, toolUseId: 't', isError: false } });
    // Not cut: left to the event log's own redaction, untouched here.
    const whole = { type: 'tool_end', data: { tool: 'Bash', result: `ends with ${SECRET.slice(0, 12)}`, toolUseId: 't', isError: false } };
    assert.deepEqual(events.events(whole), [whole]);
  });
});

describe('the process log', () => {
  test('a logged error, headers object or message string carrying a secret comes out redacted', () => {
    const script = `
      import { createLogger } from ${JSON.stringify(new URL('../../src/logger.ts', import.meta.url).pathname)};
      import { Redactor } from ${JSON.stringify(new URL('../../src/secrets/redactor.ts', import.meta.url).pathname)};
      const redactor = new Redactor();
      redactor.add('session-a', ${JSON.stringify(SECRET)});
      const log = createLogger('trace', redactor);
      log.error({ err: new Error('upstream said ${SECRET}') }, 'an error');
      log.warn({ headers: Object.assign(Object.create(null), { cookie: 'a=${SECRET}' }) }, 'headers');
      log.info('message with ${SECRET} in it');
      log.info({ nested: { list: ['${SECRET}'] } }, 'nested');
    `;
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    const lines = result.stdout.trim().split('\n');
    assert.equal(lines.length, 4, result.stdout);
    assert.ok(!result.stdout.includes(SECRET), result.stdout);
    assert.match(lines[0]!, /upstream said \[REDACTED\]/);
    assert.match(lines[1]!, /a=\[REDACTED\]/);
    assert.match(lines[2]!, /message with \[REDACTED\] in it/);
  });
});

describe('deep redaction (log lines, events, errors)', () => {
  test('errors, their causes, and prototype-less objects such as HTTP headers are redacted too', () => {
    const redactor = redactorWith(SECRET);
    const headers = Object.assign(Object.create(null) as Record<string, string>, { 'x-api-key': SECRET });
    const error = Object.assign(new Error(`failed with ${SECRET}`, { cause: new Error(`because ${SECRET}`) }), { detail: SECRET });
    const out = JSON.stringify(redactor.redactDeep({ err: error, headers, list: [SECRET], nested: { deep: `x${SECRET}x` } }));
    assert.ok(!out.includes(SECRET), out);
    assert.match(out, /failed with \[REDACTED\]/);
    assert.match(out, /because \[REDACTED\]/);
    assert.match(out, /"x-api-key":"\[REDACTED\]"/);
  });

  test('an env value as long as the API allows (32 KiB) is redacted, and does not break redaction of the others', () => {
    const long = `${'a'.repeat(32 * 1024 - 1)}b`;
    const dots = '.'.repeat(20_000);
    const redactor = redactorWith(long, dots, SECRET);
    assert.equal(redactor.redact(`<${long}> <${SECRET}>`), `<${REDACTED}> <${REDACTED}>`);
    assert.equal(redactor.redact(`<${dots}>`), `<${REDACTED}>`);
    assert.equal(JSON.stringify(redactor.redactDeep({ v: long })), `{"v":"${REDACTED}"}`);
  });

  test('values shorter than six characters are left alone (they would mangle ordinary text)', () => {
    const redactor = redactorWith('yes', 'abcdef');
    assert.equal(redactor.redact('yes abcdef'), `yes ${REDACTED}`);
  });
});

describe('scopes: a session is redacted with its own secrets and the process\'s, never another\'s', () => {
  test('no session can use redaction as an oracle for another session\'s secrets; logs hide them all', () => {
    const r = new Redactor();
    r.addPermanent('sk-ant-process-key-1');
    r.add('session-a', 'alpha-secret-1');
    r.add('session-b', 'bravo-secret-2');
    const text = 'alpha-secret-1 bravo-secret-2 sk-ant-process-key-1';
    assert.equal(r.redact(text, 'session-a'), '[REDACTED] bravo-secret-2 [REDACTED]');
    assert.equal(r.redact(text, 'session-b'), 'alpha-secret-1 [REDACTED] [REDACTED]');
    assert.equal(r.redact(text, 'session-c'), 'alpha-secret-1 bravo-secret-2 [REDACTED]');
    assert.equal(r.redact(text), '[REDACTED] [REDACTED] [REDACTED]');
    assert.deepEqual(r.redactDeep({ a: ['alpha-secret-1'], 'bravo-secret-2': 1 }, 'session-b'), { a: ['alpha-secret-1'], '[REDACTED]': 1 });
  });

  test('a session secret that contains the process key is replaced whole, not around it', () => {
    const r = new Redactor();
    r.addPermanent('sk-ant-process-key-1');
    r.add('session-a', 'wrapped-sk-ant-process-key-1-tail');
    assert.equal(r.redact('x wrapped-sk-ant-process-key-1-tail y', 'session-a'), 'x [REDACTED] y');
    assert.equal(r.redact('x sk-ant-process-key-1 y', 'session-a'), 'x [REDACTED] y');
  });

  test('secrets of any length, in one pass; the oldest session secrets are forgotten past the bound', () => {
    const r = new Redactor();
    const long = 'L'.repeat(40_000) + 'end';
    r.add('session-a', long);
    assert.equal(r.redact(`<${long}>`, 'session-a'), '<[REDACTED]>');
    for (let i = 0; i < 50_001; i++) r.add('session-b', `bulk-secret-${i}`);
    assert.equal(r.redact('bulk-secret-50000', 'session-b'), '[REDACTED]');
    // The very first ones fell out; the memory bound holds.
    assert.equal(r.redact(`<${long}>`, 'session-a'), `<${long}>`);
  });
});
