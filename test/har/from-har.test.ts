/**
 * `tools from-har` end to end: a real HAR recorded by Chromium from the mock
 * Acme admin UI, a real runner whose scripted model plays the har-to-tools
 * agent (reading the uploaded HAR with jq, writing scripts with Bash in a
 * sandbox with no network), then the generated scripts run against the mock API.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { ADMIN_LOGIN, startMockAcmeApi, type MockAcmeApi } from '../../examples/support-bot/mock-api.ts';
import { ClaudeRunnerClient, type StreamFrame } from '../../src/client/index.ts';
import { SECTION_BEGIN } from '../../src/har/agent-files.ts';
import { HarError, INPUT_HAR, toolsFromHar } from '../../src/har/from-har.ts';
import { bash, rule, text } from '../../src/scripted-model/index.ts';
import type { Rule } from '../../src/scripted-model/types.ts';
import { ROOT, startHarness, type Harness } from '../support/harness.ts';

const ACME_TOKEN = 'acme-admin-tok-5c2e9f01d7b34a68';
const run = promisify(execFile);

const CUSTOMERS_SH = `#!/bin/bash
# acme-customers: Acme admin's customers.
#   acme-customers.sh find <email>   the customer with this email (id, name, plan)
# Needs PRODUCT_API_URL and PRODUCT_API_TOKEN in the environment. Prints JSON.
set -euo pipefail
: "\${PRODUCT_API_URL:?PRODUCT_API_URL is not set}"
: "\${PRODUCT_API_TOKEN:?PRODUCT_API_TOKEN is not set}"
case "\${1:-}" in
  find)
    email="\${2:?usage: acme-customers.sh find <email>}"
    curl -sS --fail-with-body -G -H "Authorization: Bearer $PRODUCT_API_TOKEN" \\
      --data-urlencode "email=$email" "$PRODUCT_API_URL/admin/api/customers"
    ;;
  *) echo '{"error":"usage: acme-customers.sh find <email>"}'; exit 2 ;;
esac
`;
const ORDERS_SH = `#!/bin/bash
# acme-orders: Acme admin's orders.
#   acme-orders.sh list <customer-id>                the customer's orders
#   acme-orders.sh refund <order-id> <amount> [reason]   refund part or all of an order
# Needs PRODUCT_API_URL and PRODUCT_API_TOKEN in the environment. Prints JSON.
set -euo pipefail
: "\${PRODUCT_API_URL:?PRODUCT_API_URL is not set}"
: "\${PRODUCT_API_TOKEN:?PRODUCT_API_TOKEN is not set}"
case "\${1:-}" in
  list)
    customer="\${2:?usage: acme-orders.sh list <customer-id>}"
    curl -sS --fail-with-body -H "Authorization: Bearer $PRODUCT_API_TOKEN" "$PRODUCT_API_URL/admin/api/customers/$customer/orders"
    ;;
  refund)
    order="\${2:?usage: acme-orders.sh refund <order-id> <amount> [reason]}"
    amount="\${3:?usage: acme-orders.sh refund <order-id> <amount> [reason]}"
    jq -n --arg amount "$amount" --arg reason "\${4:-}" '{amount: ($amount|tonumber), reason: $reason}' |
      curl -sS --fail-with-body -X POST -H "Authorization: Bearer $PRODUCT_API_TOKEN" \\
        -H 'content-type: application/json' --data @- "$PRODUCT_API_URL/admin/api/orders/$order/refund"
    ;;
  *) echo '{"error":"usage: acme-orders.sh list <customer-id> | refund <order-id> <amount> [reason]"}'; exit 2 ;;
esac
`;
const SECTION = `## Acme admin tools

The tools read \`PRODUCT_API_URL\` and \`PRODUCT_API_TOKEN\` from the environment.

- \`tools/acme-customers.sh find <email>\`: the customer with this email (id, name, plan).
- \`tools/acme-orders.sh list <customer-id>\`: the customer's orders (id, amount, status).
- \`tools/acme-orders.sh refund <order-id> <amount> [reason]\`: refunds an order; changes data, confirm first.
`;

/** Bash that writes `path` with `content` (a quoted heredoc: nothing in it is expanded). */
const writeFile = (path: string, content: string) => `cat > ${path} <<'FROM_HAR_EOF'\n${content}FROM_HAR_EOF`;

/** The conversion as the agent would do it: look at the HAR, then write the scripts, the section, the answer. */
function conversionRule(scripts: Record<string, string>, section = SECTION): Rule {
  return rule('Turn the HAR recording',
    bash(`jq -r '.log.entries[] | [.request.method, .request.url] | @tsv' ${INPUT_HAR}; echo ---; cat input/existing-tools.txt`),
    // Written only if the listing shows the recorded calls: the HAR really reached the sandbox.
    (ctx) => (ctx.lastToolResult ?? '').includes('/admin/api/customers/cus_1/orders') && (ctx.lastToolResult ?? '').includes('acme-cli.sh')
      ? bash(['mkdir -p out/tools', ...Object.entries(scripts).map(([name, body]) => writeFile(`out/tools/${name}`, body)), writeFile('out/AGENTS.section.md', section)].join('\n'))
      : text(`{"notes":"the HAR was not readable: ${JSON.stringify((ctx.lastToolResult ?? '').slice(0, 200))}"}`),
    text(JSON.stringify({ tools: Object.keys(scripts).map((name) => ({ file: `tools/${name}`, operations: [], summary: '' })), env: ['PRODUCT_API_URL', 'PRODUCT_API_TOKEN'], skipped: [], notes: '' })),
  );
}

let api: MockAcmeApi;
let harness: Harness;
let client: ClaudeRunnerClient;
let base: string;
let harPath: string;
let sessionCookie: string;

before(async () => {
  base = mkdtempSync(join(tmpdir(), 'from-har-'));
  api = await startMockAcmeApi({ token: ACME_TOKEN, host: '127.0.0.1' });
  harPath = join(base, 'acme-admin.har');
  const context = await chromium.launchPersistentContext(join(base, 'profile'), {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    recordHar: { path: harPath },
  });
  try {
    const page = context.pages()[0] ?? await context.newPage();
    await page.goto(`http://127.0.0.1:${api.port}/admin`);
    await page.fill('#login [name=email]', ADMIN_LOGIN.email);
    await page.fill('#login [name=password]', ADMIN_LOGIN.password);
    await page.click('#login button');
    await page.waitForSelector('#lookup:not([hidden])');
    await page.fill('#lookup [name=email]', 'alice@startup.io');
    await page.click('#lookup button');
    await page.waitForSelector('#orders:not([hidden])');
    await page.click('#orders');
    await page.click('text=Refund ord_1002');
    await page.locator('#result', { hasText: '"refunded"' }).waitFor();
    sessionCookie = (await context.cookies()).find((cookie) => cookie.name === 'acme_session')!.value;
    await page.click('#export');
    await page.waitForURL(/\/admin\/api\/orders\/export/);
  } finally {
    await context.close(); // writes the HAR
  }
  harness = await startHarness({ rules: [conversionRule({ 'acme-customers.sh': CUSTOMERS_SH, 'acme-orders.sh': ORDERS_SH })] });
  client = new ClaudeRunnerClient({ baseUrl: harness.url });
});

after(async () => {
  await harness?.close();
  await api?.close();
  rmSync(base, { recursive: true, force: true });
});

/** A copy of the support bot's template: it has a tool of its own (acme-cli.sh) the new ones must not clash with. */
function targetTemplate(): string {
  const dir = mkdtempSync(join(base, 'target-'));
  cpSync(join(ROOT, 'examples/support-bot/agent'), dir, { recursive: true });
  return dir;
}

test('the recording holds the credentials the browser sent', () => {
  const har = readFileSync(harPath, 'utf8');
  for (const secret of [ACME_TOKEN, ADMIN_LOGIN.password, sessionCookie]) assert.ok(har.includes(secret), 'the HAR should carry it before redaction');
});

test('dry run: a diff, nothing written; the session got a HAR without credentials and is deleted after', async () => {
  const agentDir = targetTemplate();
  const agentsBefore = readFileSync(join(agentDir, 'AGENTS.md'), 'utf8');
  let uploaded: Promise<Uint8Array> | undefined;
  const frames: StreamFrame[] = [];
  const sessionId = 'from-har-dry';
  const result = await toolsFromHar({
    harPath, agentDir, dryRun: true, client, sessionId,
    onFrame: (frame) => {
      frames.push(frame);
      // While the task runs, the session and its inputs exist: read back what the sandbox was given.
      uploaded ??= client.readFile(sessionId, INPUT_HAR);
    },
  });
  const sentHar = new TextDecoder().decode(await uploaded!);
  for (const secret of [ACME_TOKEN, ADMIN_LOGIN.password, sessionCookie]) assert.equal(sentHar.includes(secret), false, 'a credential reached the sandbox');
  assert.match(sentHar, /Bearer <redacted:authorization>/);
  assert.match(sentHar, /acme_session=<redacted:set-cookie>/);
  assert.match(sentHar, /access_token=<redacted:access_token>/);
  assert.match(sentHar, /<redacted:password>/);
  assert.ok(result.redactions >= 6, `redactions: ${result.redactions}`);

  assert.equal(result.written, false);
  assert.deepEqual(result.files, [
    { path: 'tools/acme-customers.sh', mode: 0o755 },
    { path: 'tools/acme-orders.sh', mode: 0o755 },
    { path: 'AGENTS.md', mode: 0o644 },
  ]);
  assert.match(result.diff, /^--- \/dev\/null\n\+\+\+ b\/tools\/acme-orders\.sh$/m);
  assert.match(result.diff, /^\+# Generated by claude-runner tools from-har/m);
  assert.match(result.diff, /^--- a\/AGENTS\.md\n\+\+\+ b\/AGENTS\.md$/m);
  assert.match(result.diff, /^\+- `tools\/acme-orders\.sh list <customer-id>`/m);
  assert.deepEqual(readdirSync(join(agentDir, 'tools')), ['acme-cli.sh']);
  assert.equal(readFileSync(join(agentDir, 'AGENTS.md'), 'utf8'), agentsBefore);

  assert.ok(frames.some((frame) => frame.type === 'task_complete'), 'the task\'s events were followed to the end');
  await assert.rejects(client.getSession(result.sessionId), (error: { code?: string }) => error.code === 'SESSION_NOT_FOUND');
});

test('for real: executable scripts that read URL and token from the environment, the section once even after a second run, and they work', async () => {
  const agentDir = targetTemplate();
  const first = await toolsFromHar({ harPath, agentDir, dryRun: false, client, sessionId: 'from-har-real' });
  assert.equal(first.written, true);
  assert.equal(first.sessionId, 'from-har-real');
  assert.match(first.taskId, /^task_/);
  assert.deepEqual(readdirSync(join(agentDir, 'tools')).sort(), ['acme-cli.sh', 'acme-customers.sh', 'acme-orders.sh']);
  for (const name of ['acme-customers.sh', 'acme-orders.sh']) {
    const path = join(agentDir, 'tools', name);
    assert.equal(statSync(path).mode & 0o777, 0o755, name);
    const script = readFileSync(path, 'utf8');
    assert.match(script, /\$\{PRODUCT_API_URL:\?/);
    assert.match(script, /\$\{PRODUCT_API_TOKEN:\?/);
    for (const secret of [ACME_TOKEN, ADMIN_LOGIN.password, sessionCookie, `127.0.0.1:${api.port}`, '<redacted:']) assert.equal(script.includes(secret), false, `${name} holds ${secret}`);
  }
  const agentsMd = readFileSync(join(agentDir, 'AGENTS.md'), 'utf8');
  assert.ok(agentsMd.startsWith('# Acme support agent\n'), 'the operator\'s text stays first');
  assert.ok(agentsMd.includes('`tools/acme-orders.sh refund <order-id> <amount> [reason]`'));

  const second = await toolsFromHar({ harPath, agentDir, dryRun: false, client, sessionId: 'from-har-again' });
  assert.notEqual(second.taskId, first.taskId);
  const again = readFileSync(join(agentDir, 'AGENTS.md'), 'utf8');
  assert.equal(again.split(SECTION_BEGIN).length - 1, 1, 'one section after two runs');
  assert.equal(again, agentsMd);

  const env = { PATH: process.env.PATH!, PRODUCT_API_URL: `http://127.0.0.1:${api.port}`, PRODUCT_API_TOKEN: ACME_TOKEN };
  const customer = JSON.parse((await run(join(agentDir, 'tools/acme-customers.sh'), ['find', 'bob@bigco.com'], { env })).stdout);
  assert.deepEqual(customer, { id: 'cus_2', name: 'Bob Okafor', email: 'bob@bigco.com', plan: 'enterprise' });
  const refund = JSON.parse((await run(join(agentDir, 'tools/acme-orders.sh'), ['refund', 'ord_2001', '100', 'goodwill'], { env })).stdout);
  assert.deepEqual(refund, { orderId: 'ord_2001', refunded: 100, reason: 'goodwill', status: 'partially_refunded' });
  const orders = JSON.parse((await run(join(agentDir, 'tools/acme-orders.sh'), ['list', 'cus_2'], { env })).stdout);
  assert.equal(orders[0].status, 'partially_refunded');
  // Without the token in the environment the script says so and fails.
  await assert.rejects(run(join(agentDir, 'tools/acme-orders.sh'), ['list', 'cus_2'], { env: { PATH: env.PATH, PRODUCT_API_URL: env.PRODUCT_API_URL } }),
    (error: { code?: number; stderr?: string }) => error.code !== 0 && /PRODUCT_API_TOKEN is not set/.test(error.stderr ?? ''));
});

test('a script that hard-codes a credential or the product\'s address is refused, and nothing is written', async () => {
  const cases: [string, RegExp][] = [
    [ORDERS_SH.replace('Bearer $PRODUCT_API_TOKEN', 'Bearer <redacted:authorization>'), /contains a redaction placeholder/],
    [ORDERS_SH.replace('"$PRODUCT_API_URL/admin', `"http://127.0.0.1:${api.port}/admin`), /hard-codes 127\.0\.0\.1:\d+/],
  ];
  for (const [script, expected] of cases) {
    harness.model.setRules([conversionRule({ 'acme-orders.sh': script })]);
    const agentDir = targetTemplate();
    await assert.rejects(toolsFromHar({ harPath, agentDir, dryRun: false, client }),
      (error: HarError) => error.code === 'UNSAFE_OUTPUT' && expected.test(error.message));
    assert.deepEqual(readdirSync(join(agentDir, 'tools')), ['acme-cli.sh']);
  }
  // With keepSecrets the agent sees the real token: copying it into a script is refused too.
  harness.model.setRules([conversionRule({ 'acme-orders.sh': ORDERS_SH.replace('Bearer $PRODUCT_API_TOKEN', `Bearer ${ACME_TOKEN}`) })]);
  await assert.rejects(toolsFromHar({ harPath, agentDir: targetTemplate(), dryRun: true, keepSecrets: true, client }),
    (error: HarError) => error.code === 'UNSAFE_OUTPUT' && /contains 1 credential\(s\) from the recording/.test(error.message) && !error.message.includes(ACME_TOKEN));
});

test('a file that is not a HAR is refused before any session is made', async () => {
  const notHar = join(base, 'page.har');
  cpSync(join(ROOT, 'package.json'), notHar);
  await assert.rejects(toolsFromHar({ harPath: notHar, agentDir: targetTemplate(), dryRun: true, client }),
    (error: HarError) => error.code === 'INVALID_HAR' && /is not a HAR file: it has no log\.entries array/.test(error.message));
});
