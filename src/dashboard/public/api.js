// Talking to the runner: the API key (asked once, kept in localStorage), JSON calls, stream tokens.
// Every URL is relative to the page, so the dashboard also works behind a proxy that mounts it under a path.
import { signal } from '@preact/signals';

const KEY_STORAGE = 'claude-runner.api-key';

function storedKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) ?? '';
  } catch {
    return '';
  }
}

export const apiKey = signal(storedKey());
/** Set when the runner answered 401: the key form is shown until a key works. */
export const keyRequired = signal(false);

export function saveKey(key) {
  apiKey.value = key;
  try {
    localStorage.setItem(KEY_STORAGE, key);
  } catch {
    // private mode: kept for this tab only
  }
}

export function forgetKey() {
  apiKey.value = '';
  try {
    localStorage.removeItem(KEY_STORAGE);
  } catch {
    // nothing stored
  }
  keyRequired.value = true;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function apiUrl(path) {
  return new URL(path, document.baseURI);
}

function headers(json) {
  const result = {};
  if (apiKey.value) result.authorization = `Bearer ${apiKey.value}`;
  if (json) result['content-type'] = 'application/json';
  return result;
}

/** A call to the API: parsed JSON (or the Response with `raw`); an ApiError with the runner's code otherwise. */
export async function api(path, { method = 'GET', json, raw = false, key } = {}) {
  const init = { method, headers: headers(json !== undefined) };
  if (key !== undefined) init.headers.authorization = `Bearer ${key}`;
  if (json !== undefined) init.body = JSON.stringify(json);
  const response = await fetch(apiUrl(path), init);
  if (response.status === 401 && key === undefined) keyRequired.value = true;
  if (!response.ok) {
    let code = 'HTTP_' + response.status;
    let message = response.statusText;
    try {
      const body = await response.json();
      code = body.error?.code ?? code;
      message = body.error?.message ?? message;
    } catch {
      // not JSON
    }
    throw new ApiError(response.status, code, message);
  }
  return raw ? response : response.json();
}

/** Checks a key before keeping it: true when the runner accepts it. */
export async function tryKey(key) {
  try {
    await api('sessions?limit=1', { key });
    return true;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return false;
    throw error;
  }
}

/** A short-lived token for one session's stream (browsers cannot put a key on a WebSocket); null without keys. */
export async function streamToken(sessionId) {
  if (!apiKey.value) return null;
  const { token } = await api('auth/stream-token', { method: 'POST', json: { sessionId, ttlSeconds: 3600 } });
  return token;
}

export const sessionPath = (id) => `session/${encodeURIComponent(id)}`;
