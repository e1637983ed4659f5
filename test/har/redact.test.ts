/** HAR redaction: every kind of credential a browser recording carries is replaced by a placeholder of its kind. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HarError, leakedSecrets, parseHar, redactHar, type Har } from '../../src/har/redact.ts';

const SECRETS = {
  bearer: 'tok_live_4f9a8b7c6d5e4f3a2b1c',
  proxy: 'cHJveHl1c2VyOnByb3h5cGFzcw==',
  cookie: 'sess-8c1d2e3f4a5b6c7d8e9f',
  csrf: 'csrf-77aa88bb99cc00dd',
  setCookie: 'sess-new-0a1b2c3d4e5f6a7b',
  apiKey: 'ak_9f8e7d6c5b4a39281706',
  queryToken: 'qt-5e6f7a8b9c0d1e2f3a4b',
  password: 'correct-horse-battery-staple',
  formSecret: 'cs_1a2b3c4d5e6f7a8b9c0d',
  loginToken: 'lt_abcdef0123456789abcd',
  nestedKey: 'nk_1029384756abcdefabcd',
  jwt: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJlLXBhcnQtMTIzNA',
  anthropic: 'sk-ant-api03-abcdefghijklmnopqrstuv',
};

function recording(): Har {
  return {
    log: {
      version: '1.2',
      creator: { name: 'test', version: '1' },
      entries: [
        {
          request: {
            method: 'POST', url: 'https://acme.test/api/login', httpVersion: 'HTTP/1.1',
            headers: [{ name: 'Content-Type', value: 'application/json' }, { name: 'Proxy-Authorization', value: `Basic ${SECRETS.proxy}` }],
            cookies: [], queryString: [],
            postData: { mimeType: 'application/json', text: JSON.stringify({ email: 'admin@acme.test', password: SECRETS.password, profile: { apiKey: SECRETS.nestedKey } }) },
          },
          response: {
            status: 200,
            headers: [{ name: 'Set-Cookie', value: `acme_session=${SECRETS.setCookie}; Path=/; HttpOnly` }, { name: 'Content-Type', value: 'application/json' }],
            cookies: [{ name: 'acme_session', value: SECRETS.setCookie, path: '/' }],
            content: { mimeType: 'application/json', text: JSON.stringify({ token: SECRETS.loginToken, user: { email: 'admin@acme.test' } }) },
          },
        },
        {
          request: {
            method: 'GET', url: `https://acme.test/api/orders/export?customer=cus_1&access_token=${SECRETS.queryToken}`,
            headers: [
              { name: 'Authorization', value: `Bearer ${SECRETS.bearer}` },
              { name: 'Cookie', value: `acme_session=${SECRETS.cookie}; theme=dark` },
              { name: 'X-CSRF-Token', value: SECRETS.csrf },
              { name: 'X-Api-Key', value: SECRETS.apiKey },
              { name: 'Referer', value: `https://acme.test/admin#jwt=${SECRETS.jwt}` },
            ],
            cookies: [{ name: 'acme_session', value: SECRETS.cookie }, { name: 'theme', value: 'dark' }],
            queryString: [{ name: 'customer', value: 'cus_1' }, { name: 'access_token', value: SECRETS.queryToken }],
          },
          response: {
            status: 200, headers: [], cookies: [],
            // The page echoes credentials: the token seen in the login answer, and a key-looking value.
            content: { mimeType: 'text/html', text: `<script>window.TOKEN="${SECRETS.loginToken}"; const k="${SECRETS.anthropic}";</script>` },
          },
        },
        {
          request: {
            method: 'POST', url: 'https://acme.test/oauth/token', headers: [], cookies: [], queryString: [],
            postData: {
              mimeType: 'application/x-www-form-urlencoded',
              text: `grant_type=client_credentials&client_id=acme-admin&client_secret=${SECRETS.formSecret}`,
              params: [{ name: 'grant_type', value: 'client_credentials' }, { name: 'client_id', value: 'acme-admin' }, { name: 'client_secret', value: SECRETS.formSecret }],
            },
          },
          response: { status: 200, headers: [], cookies: [], content: { mimeType: 'application/json', text: '{"expires_in":3600}' } },
        },
      ],
    },
  };
}

test('no credential is left, anywhere in the recording', () => {
  const { har } = redactHar(recording());
  const text = JSON.stringify(har);
  for (const [kind, secret] of Object.entries(SECRETS)) assert.equal(text.includes(secret), false, `${kind} left in the HAR`);
});

test('placeholders name the kind of credential, and what is not secret stays', () => {
  const { har } = redactHar(recording());
  const [login, exported, oauth] = har.log.entries;
  const header = (list: { name: string; value: string }[] | undefined, name: string) => list!.find((h) => h.name === name)!.value;
  assert.equal(header(exported!.request.headers, 'Authorization'), 'Bearer <redacted:authorization>');
  assert.equal(header(login!.request.headers, 'Proxy-Authorization'), 'Basic <redacted:proxy-authorization>');
  // Cookie names tell the agent which cookie the API wants; all values go.
  assert.equal(header(exported!.request.headers, 'Cookie'), 'acme_session=<redacted:cookie>; theme=<redacted:cookie>');
  assert.equal(header(login!.response!.headers, 'Set-Cookie'), 'acme_session=<redacted:set-cookie>; Path=/; HttpOnly');
  assert.equal(header(exported!.request.headers, 'X-CSRF-Token'), '<redacted:x-csrf-token>');
  assert.equal(header(exported!.request.headers, 'X-Api-Key'), '<redacted:x-api-key>');
  assert.equal(header(exported!.request.headers, 'Referer'), 'https://acme.test/admin#jwt=<redacted:jwt>');
  assert.equal(header(login!.request.headers, 'Content-Type'), 'application/json');
  assert.deepEqual(exported!.request.cookies, [{ name: 'acme_session', value: '<redacted:cookie>' }, { name: 'theme', value: '<redacted:cookie>' }]);
  assert.equal(exported!.request.url, 'https://acme.test/api/orders/export?customer=cus_1&access_token=<redacted:access_token>');
  assert.deepEqual(exported!.request.queryString, [{ name: 'customer', value: 'cus_1' }, { name: 'access_token', value: '<redacted:access_token>' }]);
  assert.deepEqual(JSON.parse(login!.request.postData!.text!), { email: 'admin@acme.test', password: '<redacted:password>', profile: { apiKey: '<redacted:apikey>' } });
  assert.deepEqual(JSON.parse(login!.response!.content!.text!), { token: '<redacted:token>', user: { email: 'admin@acme.test' } });
  assert.equal(exported!.response!.content!.text, '<script>window.TOKEN="<redacted:token>"; const k="<redacted:key>";</script>');
  assert.equal(oauth!.request.postData!.text, 'grant_type=client_credentials&client_id=acme-admin&client_secret=<redacted:client_secret>');
  assert.deepEqual(oauth!.request.postData!.params!.map((p) => p.value), ['client_credentials', 'acme-admin', '<redacted:client_secret>']);
});

test('redactions are counted, by kind', () => {
  const { redactions, byKind } = redactHar(recording());
  assert.equal(redactions, Object.values(byKind).reduce((sum, n) => sum + n, 0));
  assert.deepEqual(byKind, {
    '<redacted:proxy-authorization>': 1,
    '<redacted:password>': 1,
    '<redacted:apikey>': 1,
    '<redacted:set-cookie>': 2,
    '<redacted:token>': 2, // the login answer's field, then the same value echoed in the page
    '<redacted:authorization>': 1,
    '<redacted:cookie>': 4,
    '<redacted:x-csrf-token>': 1,
    '<redacted:x-api-key>': 1,
    '<redacted:access_token>': 2,
    '<redacted:client_secret>': 2,
    '<redacted:jwt>': 1,
    '<redacted:key>': 1,
  });
});

test('keepSecrets keeps the recording as it was, and still lists its credentials', () => {
  const original = recording();
  const { har, redactions, secrets } = redactHar(original, { keepSecrets: true });
  assert.deepEqual(har, original);
  assert.equal(redactions, 0);
  for (const secret of Object.values(SECRETS)) assert.ok(secrets.includes(secret), `${secret} not listed`);
  assert.deepEqual(leakedSecrets(`curl -H "Authorization: Bearer ${SECRETS.bearer}"`, secrets), [SECRETS.bearer]);
  assert.deepEqual(leakedSecrets('curl -H "Authorization: Bearer $PRODUCT_API_TOKEN"', secrets), []);
});

test('the input is not changed', () => {
  const original = recording();
  redactHar(original);
  assert.deepEqual(original, recording());
});

test('what is not a HAR is refused with a clear message', () => {
  assert.throws(() => parseHar('<html></html>', 'page.har'), (error: HarError) => error.code === 'INVALID_HAR' && /page\.har is not a HAR file: not JSON/.test(error.message));
  assert.throws(() => parseHar('{"entries":[]}', 'x.har'), /x\.har is not a HAR file: it has no log\.entries array/);
  assert.throws(() => parseHar('{"log":{"entries":[{"request":{"url":"https://a"}}]}}', 'x.har'), /log\.entries\[0\] has no request\.method and request\.url/);
  assert.throws(() => parseHar('{"log":{"entries":[]}}', 'x.har'), /x\.har holds no requests/);
  assert.equal(parseHar(JSON.stringify(recording())).log.entries.length, 3);
});

test('a word-like cookie value is redacted where it was sent, not everywhere else', () => {
  const har: Har = { log: { entries: [{
    request: { method: 'GET', url: 'https://acme.test/page', headers: [{ name: 'Cookie', value: 'theme=default' }] },
    response: { status: 200, content: { mimeType: 'text/html', text: '<p>default plan</p>' } },
  }] } };
  const { har: redacted } = redactHar(har);
  assert.equal(redacted.log.entries[0]!.request.headers![0]!.value, 'theme=<redacted:cookie>');
  assert.equal(redacted.log.entries[0]!.response!.content!.text, '<p>default plan</p>');
});
