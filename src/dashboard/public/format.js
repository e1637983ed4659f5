// Figures as people read them: money, durations, sizes, relative times.

export function money(usd) {
  if (typeof usd !== 'number' || !Number.isFinite(usd)) return '—';
  if (usd === 0) return '$0.00';
  if (usd < 0.01) return `$${usd.toFixed(4)}`;
  return `$${usd.toFixed(2)}`;
}

export function duration(ms) {
  if (typeof ms !== 'number' || ms <= 0) return '—';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes} min ${Math.round((ms % 60_000) / 1000)} s`;
}

export function bytes(size) {
  if (typeof size !== 'number') return '';
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KB`;
  return `${(size / 1024 / 1024).toFixed(1)} MB`;
}

export function relativeTime(iso, now = Date.now()) {
  const at = typeof iso === 'number' ? iso : Date.parse(iso);
  if (!iso || Number.isNaN(at)) return '—';
  const seconds = Math.round((now - at) / 1000);
  if (seconds < 5) return 'just now';
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)}h ago`;
  return `${Math.floor(seconds / 86_400)}d ago`;
}

/** A task's usage as "240 in · 40 out tokens". */
export function tokens(usage) {
  if (!usage || typeof usage !== 'object') return '';
  const input = (usage.inputTokens ?? 0) + (usage.cacheReadInputTokens ?? 0) + (usage.cacheCreationInputTokens ?? 0);
  return `${input} in · ${usage.outputTokens ?? 0} out tokens`;
}

export function clock(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : '';
}

/** One line of a longer text, cut to `max` characters. */
export function preview(value, max = 120) {
  if (value === null || value === undefined) return '';
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

export function pretty(value) {
  if (typeof value === 'string') return value;
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

/** What a task produced, as text: the response of the default shape, else the JSON. */
export function outputText(output) {
  if (output === null || output === undefined) return '';
  if (typeof output === 'object' && typeof output.response === 'string' && Object.keys(output).length === 1) return output.response;
  return pretty(output);
}
