/**
 * HAR 1.2 redaction: a browser recording of a product's web UI carries the
 * recorder's credentials (Authorization and Cookie headers, Set-Cookie,
 * tokens in query strings, login bodies, JWTs echoed in pages). Before a
 * recording leaves the operator's machine for an agent's sandbox, every such
 * value is replaced by a placeholder naming its kind (`<redacted:cookie>`),
 * so the agent still sees that a credential was sent there and how.
 *
 * Owns: recognizing credentials in a HAR and replacing them; the list of the
 * values it replaced (kept in memory, for checking that none comes back).
 * Must not touch: files, the network, or the runner's own redaction
 * (src/secrets/, which hides the runner's secrets in logs and events).
 */

export interface HarEntry {
  request: { method: string; url: string; headers?: HarNameValue[]; cookies?: HarNameValue[]; queryString?: HarNameValue[]; postData?: HarPostData; [key: string]: unknown };
  response?: { status?: number; headers?: HarNameValue[]; cookies?: HarNameValue[]; content?: { mimeType?: string; text?: string; encoding?: string; [key: string]: unknown }; [key: string]: unknown };
  [key: string]: unknown;
}
export interface HarNameValue { name: string; value: string; [key: string]: unknown }
export interface HarPostData { mimeType?: string; text?: string; params?: HarNameValue[]; [key: string]: unknown }
export interface Har { log: { version?: string; entries: HarEntry[]; [key: string]: unknown } }

/** INVALID_HAR: the input is not a HAR; CONVERSION_FAILED: the agent's task failed; UNSAFE_OUTPUT: its files were refused. */
export type HarErrorCode = 'INVALID_HAR' | 'CONVERSION_FAILED' | 'UNSAFE_OUTPUT';

export class HarError extends Error {
  override readonly name = 'HarError';
  readonly code: HarErrorCode;
  constructor(message: string, code: HarErrorCode = 'INVALID_HAR') {
    super(message);
    this.code = code;
  }
}

/** Parses and checks the shape this module and the agent rely on: HAR's log.entries[].request. */
export function parseHar(text: string, source = 'the file'): Har {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new HarError(`${source} is not a HAR file: not JSON (${(error as Error).message})`);
  }
  const log = (parsed as { log?: { entries?: unknown } } | null)?.log;
  if (typeof log !== 'object' || log === null || !Array.isArray(log.entries)) {
    throw new HarError(`${source} is not a HAR file: it has no log.entries array (record one with the browser's "Save all as HAR" or playwright's recordHar)`);
  }
  log.entries.forEach((entry: unknown, index: number) => {
    const request = (entry as { request?: { method?: unknown; url?: unknown } } | null)?.request;
    if (typeof request?.method !== 'string' || typeof request.url !== 'string') {
      throw new HarError(`${source} is not a HAR file: log.entries[${index}] has no request.method and request.url`);
    }
  });
  if (log.entries.length === 0) throw new HarError(`${source} holds no requests (log.entries is empty): nothing to turn into tools`);
  return parsed as Har;
}

/** Headers that are credentials whatever their value. */
const SECRET_HEADERS = new Set([
  'authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-api-key', 'api-key', 'apikey', 'x-auth-token',
  'x-access-token', 'x-csrf-token', 'x-xsrf-token', 'x-amz-security-token', 'x-goog-api-key', 'private-token',
]);
/** Names of headers, parameters and body fields that hold credentials. */
const SECRET_NAME = /token|secret|passw(or)?d|api[-_]?key|apikey|auth(?!or)|session|csrf|xsrf|credential|signature|cookie|bearer|private[-_]?key/i;
const SECRET_EXACT_NAME = /^(key|sid|pwd|pass|pin|otp|sig|code_verifier|client_secret)$/i;

/** Values that are credentials wherever they are found. */
const VALUE_PATTERNS: { kind: string; pattern: RegExp; keep?: number }[] = [
  { kind: 'jwt', pattern: /eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g },
  // "Bearer abc..." keeps its scheme (group 1): the agent must know how the credential is sent.
  { kind: 'bearer', pattern: /\b(Bearer|Basic|Token|Digest)\s+(?!<redacted:)[A-Za-z0-9._~+/=-]{8,}/g, keep: 1 },
  { kind: 'key', pattern: /\b(?:sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{30,})/g },
];
/** `name=value` of a secret parameter inside any URL or query-like text. */
const QUERY_SECRET = /([?&;](?:[A-Za-z0-9_.-]*(?:token|secret|password|api[-_]?key|apikey|auth|session|sig|signature|key|code)[A-Za-z0-9_.-]*)=)([^&#\s"'<>]+)/gi;

export function placeholder(kind: string): string {
  return `<redacted:${kind.toLowerCase().replace(/[^a-z0-9_.-]/g, '-')}>`;
}

export function isSecretName(name: string): boolean {
  return SECRET_HEADERS.has(name.toLowerCase()) || SECRET_NAME.test(name) || SECRET_EXACT_NAME.test(name);
}

export interface RedactionResult {
  har: Har;
  /** Values replaced (0 with keepSecrets). */
  redactions: number;
  byKind: Record<string, number>;
  /** The credentials found (also with keepSecrets): for checking the agent's files, never to be logged. */
  secrets: string[];
}

/**
 * Whether a replaced value is also looked for everywhere else: not words such
 * as a `theme=default` cookie's, which would blank every "default" in the pages.
 */
function worthSweeping(value: string): boolean {
  return value.length >= 16 || (value.length >= 8 && /\d/.test(value) && /[A-Za-z]/.test(value));
}

class Redactor {
  redactions = 0;
  readonly byKind: Record<string, number> = {};
  readonly secrets = new Map<string, string>();

  /** Remembers `value` as a credential of `kind` and answers its placeholder. */
  replace(kind: string, value: string): string {
    if (value === '' || value.startsWith('<redacted:')) return value;
    const name = placeholder(kind);
    this.redactions += 1;
    this.byKind[name] = (this.byKind[name] ?? 0) + 1;
    if (worthSweeping(value) && !this.secrets.has(value)) this.secrets.set(value, name);
    return name;
  }

  header(header: HarNameValue): void {
    const name = header.name.toLowerCase();
    if (name === 'cookie') header.value = this.cookieHeader(header.value);
    else if (name === 'set-cookie') header.value = header.value.split('\n').map((line) => this.setCookie(line)).join('\n');
    else if (name === 'authorization' || name === 'proxy-authorization') {
      const match = /^(\w+)\s+(.+)$/.exec(header.value);
      header.value = match ? `${match[1]} ${this.replace(name, match[2]!)}` : this.replace(name, header.value);
    } else if (isSecretName(name)) header.value = this.replace(name, header.value);
  }

  /** `a=1; b=2`: names stay (they tell the agent which cookie the API wants), values go. */
  cookieHeader(value: string): string {
    return value.split(/;\s*/).map((pair) => {
      const at = pair.indexOf('=');
      return at < 0 ? pair : `${pair.slice(0, at)}=${this.replace('cookie', pair.slice(at + 1))}`;
    }).join('; ');
  }

  /** `sid=abc; Path=/; HttpOnly`: the value goes, the attributes stay. */
  setCookie(line: string): string {
    const match = /^([^=;]+)=([^;]*)(.*)$/s.exec(line);
    return match ? `${match[1]}=${this.replace('set-cookie', match[2]!)}${match[3]}` : line;
  }

  params(params: HarNameValue[] | undefined): void {
    for (const param of params ?? []) if (isSecretName(param.name)) param.value = this.replace(param.name, String(param.value));
  }

  urlText(text: string): string {
    return text.replace(QUERY_SECRET, (_all, prefix: string, value: string) => {
      const name = prefix.slice(1, -1);
      return `${prefix}${this.replace(name, value)}`;
    });
  }

  /** JSON and form bodies by field name; anything else by the value patterns later. */
  body(text: string, mimeType: string | undefined): string {
    const trimmed = text.trimStart();
    if (/json/i.test(mimeType ?? '') || trimmed.startsWith('{') || trimmed.startsWith('[')) {
      try {
        return JSON.stringify(this.json(JSON.parse(text)));
      } catch {
        // not JSON after all: patterns only
      }
    }
    if (/x-www-form-urlencoded/i.test(mimeType ?? '')) {
      const form = new URLSearchParams(text);
      const out = new URLSearchParams();
      for (const [name, value] of form) out.append(name, isSecretName(name) ? this.replace(name, value) : value);
      // URLSearchParams would encode the placeholder's "<" and ">": keep them readable.
      return out.toString().replace(/%3Credacted%3A([a-z0-9_.-]+)%3E/g, '<redacted:$1>');
    }
    return text;
  }

  json(value: unknown, key?: string): unknown {
    if (Array.isArray(value)) return value.map((item) => this.json(item, key));
    if (value !== null && typeof value === 'object') {
      return Object.fromEntries(Object.entries(value).map(([name, inner]) => [name, this.json(inner, name)]));
    }
    if (key !== undefined && isSecretName(key) && (typeof value === 'string' || typeof value === 'number')) {
      return this.replace(key, String(value));
    }
    return value;
  }

  /** Known credentials and credential-looking values, in every string of the HAR. */
  sweep(value: unknown): unknown {
    if (typeof value === 'string') return this.sweepText(value);
    if (Array.isArray(value)) return value.map((item) => this.sweep(item));
    if (value !== null && typeof value === 'object') {
      for (const [name, inner] of Object.entries(value)) (value as Record<string, unknown>)[name] = this.sweep(inner);
    }
    return value;
  }

  sweepText(text: string): string {
    let out = this.urlText(text);
    for (const { kind, pattern, keep } of VALUE_PATTERNS) {
      out = out.replace(pattern, (all: string, scheme?: string) => keep ? `${scheme} ${this.replace(kind, all.slice(scheme!.length).trim())}` : this.replace(kind, all));
    }
    // Longest first: a secret that contains another is replaced whole.
    for (const [secret, name] of [...this.secrets].sort((a, b) => b[0].length - a[0].length)) {
      if (!out.includes(secret)) continue;
      const parts = out.split(secret);
      this.redactions += parts.length - 1;
      this.byKind[name] = (this.byKind[name] ?? 0) + parts.length - 1;
      out = parts.join(name);
    }
    return out;
  }
}

/**
 * Redacts a parsed HAR (not changed: a copy is returned). With keepSecrets the
 * HAR is returned as is, but its credentials are still listed in `secrets`.
 */
export function redactHar(input: Har, options: { keepSecrets?: boolean } = {}): RedactionResult {
  const har = structuredClone(input);
  const redactor = new Redactor();
  for (const entry of har.log.entries) {
    const { request, response } = entry;
    request.headers?.forEach((header) => redactor.header(header));
    request.cookies?.forEach((cookie) => { cookie.value = redactor.replace('cookie', String(cookie.value)); });
    redactor.params(request.queryString);
    request.url = redactor.urlText(request.url);
    if (request.postData) {
      redactor.params(request.postData.params);
      if (typeof request.postData.text === 'string') request.postData.text = redactor.body(request.postData.text, request.postData.mimeType);
    }
    response?.headers?.forEach((header) => redactor.header(header));
    response?.cookies?.forEach((cookie) => { cookie.value = redactor.replace('set-cookie', String(cookie.value)); });
    const content = response?.content;
    if (content && typeof content.text === 'string' && content.encoding !== 'base64') content.text = redactor.body(content.text, content.mimeType);
  }
  // Then everywhere: values seen above wherever else they appear, and credential-looking values.
  redactor.sweep(har);
  const secrets = [...redactor.secrets.keys()];
  if (options.keepSecrets) return { har: structuredClone(input), redactions: 0, byKind: {}, secrets };
  return { har, redactions: redactor.redactions, byKind: redactor.byKind, secrets };
}

/** The credentials of `secrets` that occur in `text` (none is the answer wanted). */
export function leakedSecrets(text: string, secrets: string[]): string[] {
  return secrets.filter((secret) => text.includes(secret));
}
