/** Session operations, the same in every dialect (creating one is the dialect's: it decides how concurrent creations see each other). */
import { sql, type ExpressionBuilder } from 'kysely';
import { RunnerError } from '../../core/errors.ts';
import type { PageRequest } from '../../core/ports/store.ts';
import type { Page, Session, SessionSummary } from '../../core/model.ts';
import { decodeCursor, encodeCursor, pageLimit } from '../cursor.ts';
import { sessionToRow, toSession, toSummary, type Database, type Db } from '../schema.ts';

export async function findSession(db: Db, tenantId: string, id: string): Promise<Session | undefined> {
  const row = await db.selectFrom('sessions').selectAll()
    .where('tenant_id', '=', tenantId).where('id', '=', id).executeTakeFirst();
  return row && toSession(row);
}

export async function getSessionByKey(db: Db, key: string): Promise<Session | undefined> {
  const row = await db.selectFrom('sessions').selectAll().where('key', '=', key).executeTakeFirst();
  return row && toSession(row);
}

/**
 * The body of createSession, in a transaction that sees every other creation
 * (SQLite: serialized; PostgreSQL: under a lock): the stored session, or the
 * new one unless maxSessions is reached.
 */
export async function insertSession(
  trx: Db, session: Session, limits: { maxSessions: number },
): Promise<{ session: Session; created: boolean }> {
  const existing = await trx.selectFrom('sessions').selectAll()
    .where('tenant_id', '=', session.tenantId).where('id', '=', session.id).executeTakeFirst();
  if (existing) return { session: toSession(existing), created: false };
  const { n } = await trx.selectFrom('sessions')
    .select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
  if (Number(n) >= limits.maxSessions) throw new RunnerError('SESSION_LIMIT_REACHED');
  const row = await trx.insertInto('sessions').values(sessionToRow(session)).returningAll().executeTakeFirstOrThrow();
  return { session: toSession(row), created: true };
}

function countTasks(eb: ExpressionBuilder<Database & { s: Database['sessions'] }, 's'>, status: 'queued' | 'running') {
  return eb.selectFrom('tasks as t')
    .select((e) => e.fn.countAll<number>().as('n'))
    .whereRef('t.session_key', '=', 's.key')
    .where('t.status', '=', status);
}

function summaries(db: Db) {
  return db.selectFrom('sessions as s').selectAll('s').select((eb) => [
    countTasks(eb, 'queued').as('queued'),
    countTasks(eb, 'running').as('running'),
  ]);
}

export async function listSessions(db: Db, tenantId: string | null, page: PageRequest): Promise<Page<SessionSummary>> {
  const limit = pageLimit(page);
  let query = summaries(db);
  if (tenantId !== null) query = query.where('s.tenant_id', '=', tenantId);
  if (page.cursor) {
    const [createdAt, key] = decodeCursor<string>(page.cursor, 'string');
    query = query.where((eb) => eb(eb.refTuple('s.created_at', 's.key'), '<', eb.tuple(createdAt, key)));
  }
  // One row past the page tells whether another page exists.
  const rows = await query.orderBy('s.created_at', 'desc').orderBy('s.key', 'desc').limit(limit + 1).execute();
  const items = rows.slice(0, limit).map((r) => toSummary({ ...r, queued: r.queued ?? 0, running: r.running ?? 0 }));
  const last = items.at(-1);
  return { items, nextCursor: rows.length > limit && last ? encodeCursor(last.createdAt, last.key) : null };
}

export async function summarizeSession(db: Db, key: string): Promise<SessionSummary | undefined> {
  const row = await summaries(db).where('s.key', '=', key).executeTakeFirst();
  return row && toSummary({ ...row, queued: row.queued ?? 0, running: row.running ?? 0 });
}

export async function resetSession(db: Db, key: string, at: number): Promise<void> {
  // last_event_seq stays: a reset must never let seqs be reused. total_cost_usd stays too:
  // money spent stays spent, so a reset cannot refill SESSION_BUDGET_USD.
  await db.updateTable('sessions')
    .set({ agent_session_id: null, turns: 0, last_activity_at: at })
    .where('key', '=', key)
    .execute();
}

export async function deleteSession(db: Db, key: string): Promise<void> {
  // Tasks and events go with it (ON DELETE CASCADE).
  await db.deleteFrom('sessions').where('key', '=', key).execute();
}

export async function listIdleSessions(db: Db, before: number): Promise<Session[]> {
  const rows = await db.selectFrom('sessions as s').selectAll('s')
    .where('s.last_activity_at', '<', before)
    .where((eb) => eb.not(eb.exists(
      eb.selectFrom('tasks as t').select(sql.lit(1).as('one'))
        .whereRef('t.session_key', '=', 's.key')
        .where('t.status', 'in', ['queued', 'running']),
    )))
    .orderBy('s.last_activity_at').orderBy('s.key')
    .execute();
  return rows.map(toSession);
}

export async function listAllSessionKeys(db: Db): Promise<string[]> {
  const rows = await db.selectFrom('sessions').select('key').orderBy('created_at').orderBy('key').execute();
  return rows.map((r) => r.key);
}
