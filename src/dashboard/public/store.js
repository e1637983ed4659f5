// What every view shares: the route (from the URL's hash), the sessions list and /health, refreshed every
// ~2 s while the tab is visible (there is no cross-session stream), and at once when asked.
import { computed, signal } from '@preact/signals';
import { api, keyRequired } from './api.js';

const REFRESH_MS = 2000;

function parseRoute() {
  const match = /^#\/session\/(.+)$/.exec(location.hash);
  if (match) return { name: 'session', sessionId: decodeURIComponent(match[1]) };
  return { name: 'sessions' };
}

export const route = signal(parseRoute());
window.addEventListener('hashchange', () => {
  route.value = parseRoute();
});

export const sessionHref = (id) => `#/session/${encodeURIComponent(id)}`;
export const navigate = (hash) => {
  location.hash = hash;
};

export const sessions = signal(null);
export const sessionsError = signal(null);
export const health = signal(null);
/** Ids of the busy sessions whose task waits for a person (the sessions list only says "busy"). */
export const awaitingInput = signal(new Set());
/** A session's state as the views show it: "awaiting_input" rather than "busy" while its agent asks something. */
export const sessionState = (session) => (session.state === 'busy' && awaitingInput.value.has(session.sessionId) ? 'awaiting_input' : session.state);

// Few sessions are busy at once; a look at each one's latest tasks tells which of them wait for an answer.
const AWAITING_LOOKUPS = 20;
async function findAwaitingInput(list) {
  const busy = list.filter((s) => s.state === 'busy').slice(0, AWAITING_LOOKUPS);
  const found = await Promise.all(busy.map((s) => api(`session/${encodeURIComponent(s.sessionId)}/tasks?limit=5`)
    .then((page) => page.tasks.some((task) => task.status === 'awaiting_input') ? s.sessionId : null, () => null)));
  return new Set(found.filter(Boolean));
}
/** Ticks with each refresh, so relative times move on. */
export const now = signal(Date.now());

export const totals = computed(() => {
  const list = sessions.value ?? [];
  return {
    sessions: list.length,
    cost: list.reduce((sum, s) => sum + (s.totalCost ?? 0), 0),
    busy: list.filter((s) => s.state === 'busy').length,
    queued: list.reduce((sum, s) => sum + (s.queueDepth ?? 0), 0),
  };
});

let inFlight = null;
let queued = null;

/**
 * Reloads the list and the health report, one at a time. A call during a reload gets one more after it
 * (the reload under way may have been asked before the change the caller wants to see).
 */
export function refresh() {
  if (inFlight) {
    queued ??= inFlight.then(() => {
      queued = null;
      return refresh();
    });
    return queued;
  }
  inFlight = (async () => {
    const [list, report] = await Promise.allSettled([api('sessions?limit=500'), fetchHealth()]);
    if (list.status === 'fulfilled') {
      awaitingInput.value = await findAwaitingInput(list.value);
      sessions.value = list.value;
      sessionsError.value = null;
    } else if (!keyRequired.value) sessionsError.value = list.reason.message;
    if (report.status === 'fulfilled') health.value = report.value;
    now.value = Date.now();
  })().finally(() => {
    inFlight = null;
  });
  return inFlight;
}

// /health answers 503 with the same body when degraded: still worth showing.
async function fetchHealth() {
  const response = await fetch(new URL('health', document.baseURI));
  return response.json();
}

export function startPolling() {
  const tick = () => {
    if (document.visibilityState === 'visible' && !keyRequired.value) void refresh();
  };
  document.addEventListener('visibilitychange', tick);
  setInterval(tick, REFRESH_MS);
  tick();
}
