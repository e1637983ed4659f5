/**
 * The redactor, the one place secrets are taken out of text: whole values,
 * values split across streamed pieces at any point, errors and header
 * objects that a log line may carry.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { Redactor } from '../../src/secrets/redactor.ts';
import { REDACTED } from '../../src/secrets/secret-index.ts';
import { StreamRedactor } from '../../src/secrets/stream-redactor.ts';
import { AgentEventRedactor } from '../../src/tasks/agent-event-redactor.ts';

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
    const cutThrough = `${'x'.repeat(100)}${SECRET.slice(0, 12)}`;
    const [out] = events.events({ type: 'tool_end', data: { tool: 'Bash', result: cutThrough, toolUseId: 't', isError: false, truncated: true } });
    assert.deepEqual(out, { type: 'tool_end', data: { tool: 'Bash', result: `${'x'.repeat(100)}${REDACTED}`, toolUseId: 't', isError: false, truncated: true } });
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

  test('secrets of any length, in one pass; a session that floods pushes out only its own oldest', () => {
    const r = new Redactor();
    const long = 'L'.repeat(40_000) + 'end';
    r.add('session-a', long);
    assert.equal(r.redact(`<${long}>`, 'session-a'), '<[REDACTED]>');
    const started = performance.now();
    // 50 000 values sharing a long prefix: the index stays fast (a radix tree, not a scan per prefix).
    for (let i = 0; i < 50_001; i++) r.add('session-b', `bulk-secret-shared-prefix-${i}`);
    assert.ok(performance.now() - started < 5_000, `${performance.now() - started} ms`);
    assert.equal(r.redact('bulk-secret-shared-prefix-50000', 'session-b'), '[REDACTED]');
    assert.equal(r.redact('bulk-secret-shared-prefix-1', 'session-b'), 'bulk-secret-shared-prefix-1', 'its own oldest fell out');
    assert.equal(r.redact(`<${long}>`, 'session-a'), '<[REDACTED]>', 'another session\'s stayed');
  });
});

describe('no oracle: what an agent can observe never depends on secrets that are not its own', () => {
  const OPERATOR_KEY = 'sk-ant-api03-Q7xk2LmN9pRsT';

  /** How a session's deltas come out, for a text split in two pieces. */
  function split(redactor: Redactor, first: string, second: string): string[] {
    const events = new AgentEventRedactor(redactor, ['own-env-value-1'], 'session-a');
    return [
      ...events.events({ type: 'text', data: { text: first } }),
      ...events.events({ type: 'text', data: { text: second } }),
      ...events.flush(),
    ].map((e) => (e.data as { text: string }).text);
  }

  test('deltas split the same whether a guess is a prefix of the operator\'s key or not', () => {
    const redactor = new Redactor();
    redactor.addPermanent(OPERATOR_KEY);
    const right = split(redactor, 'try sk-ant-api03-Q7', ' next');
    const wrong = split(redactor, 'try sk-ant-api03-Q8', ' next');
    assert.deepEqual(right.map((t) => t.length), wrong.map((t) => t.length));
    // The key itself is still redacted wherever it appears whole.
    assert.equal(split(redactor, `x ${OPERATOR_KEY} y`, ' z').join(''), 'x [REDACTED] y z');
  });

  test('a tool result cut short ends the same whether its tail starts the operator\'s key or not', () => {
    const redactor = new Redactor();
    redactor.addPermanent(OPERATOR_KEY);
    const cut = (tail: string) => {
      const events = new AgentEventRedactor(redactor, ['own-env-value-1'], 'session-a');
      const [event] = events.events({ type: 'tool_end', data: { tool: 'Bash', toolUseId: 't', isError: false, truncated: true, result: `${'x'.repeat(100)}${tail}` } });
      return (event!.data as { result: string }).result;
    };
    assert.equal(cut('sk-ant-api03-Q7').length, cut('sk-ant-api03-Q8').length);
  });
});

describe('a running task\'s secrets cannot be pushed out', () => {
  test('values held by a running task survive a flood from many sessions; released, they age out', () => {
    const r = new Redactor();
    const release = r.hold('victim', 'victim-token-123456');
    // Past the global bound, spread over sessions so each stays under its own.
    const flood = (tag: string) => { for (let i = 0; i < 60_000; i++) r.add(`attacker-${i % 100}`, `${tag}-value-${i}`); };
    flood('flood');
    assert.equal(r.redact('victim-token-123456', 'victim'), '[REDACTED]');
    assert.equal(r.redact('victim-token-123456'), '[REDACTED]', 'in the log too');
    release();
    flood('second-flood');
    assert.equal(r.redact('victim-token-123456', 'victim'), 'victim-token-123456');
  });

  test('objects nested past the limit are cut, not passed on unread', () => {
    const r = new Redactor();
    r.add('s', 'deep-secret-value');
    let deep: unknown = 'deep-secret-value';
    for (let i = 0; i < 80; i++) deep = { inner: deep };
    assert.ok(!JSON.stringify(r.redactDeep(deep, 's')).includes('deep-secret-value'));
    assert.match(JSON.stringify(r.redactDeep(deep, 's')), /\[too deep\]/);
  });
});

describe('the index against a naive reference', () => {
  /** Longest secret at each position, left to right: the definition the index must meet. */
  function reference(text: string, secrets: Set<string>): string {
    let out = '';
    for (let at = 0; at < text.length;) {
      let hit = '';
      for (const s of secrets) if (s.length > hit.length && text.startsWith(s, at)) hit = s;
      if (hit) {
        out += REDACTED;
        at += hit.length;
      } else {
        out += text[at];
        at += 1;
      }
    }
    return out;
  }

  test('random adds and forgets over a small alphabet (shared prefixes, nested secrets) redact exactly as the reference', () => {
    let seed = 7;
    const random = (n: number) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
    const word = (min: number, max: number) => Array.from({ length: min + random(max - min + 1) }, () => 'ab'[random(2)]).join('');
    for (let round = 0; round < 40; round++) {
      const r = new Redactor();
      const live = new Set<string>();
      const releases = new Map<string, () => void>();
      for (let step = 0; step < 60; step++) {
        const secret = word(6, 12);
        if (live.has(secret) && random(2) === 0) {
          releases.get(secret)!();
          // A released value stays until pushed out; forget it from the reference only if the index did.
          continue;
        }
        releases.set(secret, r.hold('s', secret));
        live.add(secret);
      }
      for (let probe = 0; probe < 20; probe++) {
        const text = word(0, 80);
        assert.equal(r.redact(text, 's'), reference(text, live), `round ${round}: ${text}`);
      }
    }
  });

  test('past the per-session bound the oldest are forgotten, and what stays redacts exactly as the reference (delete and merge paths)', () => {
    let seed = 11;
    const random = (n: number) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
    const word = () => Array.from({ length: 6 + random(9) }, () => 'abc'[random(3)]).join('');
    const r = new Redactor();
    const order = new Map<string, true>();
    for (let i = 0; i < 3_000; i++) {
      const secret = word();
      r.add('s', secret);
      order.delete(secret);
      order.set(secret, true);
    }
    // The session keeps its newest 1 000.
    const kept = new Set([...order.keys()].slice(-1_000));
    for (let probe = 0; probe < 200; probe++) {
      const text = Array.from({ length: 60 }, () => 'abc'[random(3)]).join('');
      assert.equal(r.redact(text, 's'), reference(text, kept), text);
    }
  });
});
