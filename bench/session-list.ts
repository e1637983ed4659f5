/**
 * GET /sessions over 10,000 stored sessions (rows written straight into the
 * runner's SQLite file while it is stopped; no containers): p50/p99 of the
 * first page and of a later page reached by its cursor, and what the stored
 * sessions cost the server's heap (heapUsed after a full GC, the runner
 * restarted over 0 then over 10,000 sessions and every page read once).
 * The harness runs the runner in this process: the heap figure is a
 * difference, so the bench's own share cancels out.
 */
import { DatabaseSync } from 'node:sqlite';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DEFAULT_TENANT, type Session } from '../src/core/model.ts';
import { newId } from '../src/core/ids.ts';
import { sessionToRow } from '../src/store/sqlite/schema.ts';
import type { Harness } from '../test/support/harness.ts';
import { withHarness } from './sessions.ts';
import { percentiles, round, type Percentiles } from './stats.ts';

export interface SessionListResults {
  stored: number;
  firstPageMs: Percentiles;
  laterPageMs: Percentiles;
  laterPageIndex: number;
  pageSize: number;
  heapMiB: { before: number; after: number };
  heapBytesPerSession: number;
}

function collector(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

async function heapAfterGc(gc: () => void): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 50));
  }
  return process.memoryUsage().heapUsed;
}

function seedSessions(dataDir: string, count: number): void {
  const db = new DatabaseSync(join(dataDir, 'runner.db'));
  try {
    const now = Date.now();
    const first = sessionToRow(session(now, 0));
    const columns = Object.keys(first);
    const insert = db.prepare(`insert into sessions (${columns.join(', ')}) values (${columns.map(() => '?').join(', ')})`);
    db.exec('begin');
    for (let i = 0; i < count; i++) {
      const row = sessionToRow(session(now, i)) as Record<string, string | number | null>;
      insert.run(...columns.map((c) => row[c] ?? null));
    }
    db.exec('commit');
  } finally {
    db.close();
  }
}

function session(now: number, i: number): Session {
  return {
    // 'default': the name the runner gives a single template (the harness's).
    key: newId('s'), tenantId: DEFAULT_TENANT, id: `stored-${i}`, agent: 'default', agentSessionId: null,
    turns: 3, totalCostUsd: 0.01, createdAt: now - 20_000 + i, lastActivityAt: now,
  };
}

async function page(h: Harness, cursor: string | null): Promise<{ ms: number; next: string | null; count: number }> {
  const started = performance.now();
  const res = await h.api(`/sessions${cursor ? `?cursor=${encodeURIComponent(cursor)}` : ''}`);
  const ms = performance.now() - started;
  if (res.status !== 200) throw new Error(`bench: GET /sessions ${res.status} ${res.text.slice(0, 300)}`);
  return { ms, next: res.headers.get('x-next-cursor'), count: (res.body as unknown[]).length };
}

export async function measureSessionList(rounds: number, stored = 10_000): Promise<SessionListResults> {
  const gc = collector();
  return withHarness({}, async (h) => {
    // Both heap readings follow a restart, so they compare like with like.
    await h.stopRunner();
    await h.restartRunner();
    await page(h, null);
    const before = await heapAfterGc(gc);

    await h.stopRunner();
    seedSessions(h.dataDir, stored);
    await h.restartRunner();
    // Every page once: whatever the server keeps per session is now in its heap.
    const cursors: Array<string | null> = [null];
    let pageSize = 0;
    let seen = 0;
    for (let cursor: string | null = null; ;) {
      const { next, count } = await page(h, cursor);
      pageSize ||= count;
      seen += count;
      if (!next) break;
      cursors.push(next);
      cursor = next;
    }
    if (seen !== stored) throw new Error(`bench: GET /sessions listed ${seen} sessions, ${stored} stored`);
    const after = await heapAfterGc(gc);

    const laterPageIndex = Math.min(cursors.length - 1, 50);
    const first: number[] = [];
    const later: number[] = [];
    for (let i = 0; i < Math.max(rounds, 30); i++) {
      first.push((await page(h, null)).ms);
      later.push((await page(h, cursors[laterPageIndex]!)).ms);
    }
    return {
      stored,
      firstPageMs: percentiles(first),
      laterPageMs: percentiles(later),
      laterPageIndex,
      pageSize,
      heapMiB: { before: round(before / 1048576, 1), after: round(after / 1048576, 1) },
      heapBytesPerSession: round((after - before) / stored, 0),
    };
  });
}
