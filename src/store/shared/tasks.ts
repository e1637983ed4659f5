/**
 * Adding and reading tasks, the same in every dialect (the transaction around
 * an insert is the dialect's). Queue order everywhere is (created_at, seq).
 */
import { RunnerError } from '../../core/errors.ts';
import type { PageRequest } from '../../core/ports/store.ts';
import type { Page, Task } from '../../core/model.ts';
import { decodeCursor, encodeCursor, pageLimit } from '../cursor.ts';
import { taskToRow, toTask, type Db } from '../schema.ts';

/**
 * The body of enqueueTask, in the dialect's transaction: the task already
 * stored under its idempotency key, or the new one unless the queue is full.
 * Throws SESSION_NOT_FOUND for an unknown session.
 */
export async function insertTask(
  trx: Db, task: Task, limits: { maxQueued: number },
): Promise<{ task: Task; created: boolean }> {
  // PostgreSQL: the session row locked, so the submits to one session take turns here and each sees the
  // others' tasks (the idempotency check, the maxQueued count). SQLite runs whole transactions one at a time.
  const session = await trx.selectFrom('sessions').select('key').where('key', '=', task.sessionKey).forUpdate().executeTakeFirst();
  if (!session) throw new RunnerError('SESSION_NOT_FOUND', `No session with key ${task.sessionKey}.`);
  if (task.idempotencyKey != null) {
    const existing = await trx.selectFrom('tasks').selectAll()
      .where('session_key', '=', task.sessionKey)
      .where('idempotency_key', '=', task.idempotencyKey)
      .executeTakeFirst();
    if (existing) return sameRequest(toTask(existing), task);
  }
  const { n } = await trx.selectFrom('tasks')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('status', '=', 'queued').where('session_key', '=', task.sessionKey)
    .executeTakeFirstOrThrow();
  if (Number(n) >= limits.maxQueued) throw new RunnerError('QUEUE_FULL');
  const row = await trx.insertInto('tasks').values({ ...taskToRow(task), status: 'queued' })
    .returningAll().executeTakeFirstOrThrow();
  // The webhook's delivery is stored with its task: no crash can keep one without the other.
  if (task.options.webhookUrl) await trx.insertInto('webhook_deliveries').values({ task_id: task.id, url: task.options.webhookUrl }).execute();
  return { task: toTask(row), created: true };
}

/** A submit whose idempotency key is taken: the stored task when it is the same request, else IDEMPOTENCY_CONFLICT. */
export function sameRequest(stored: Task, submitted: Task): { task: Task; created: false } {
  if (stored.requestHash !== submitted.requestHash) throw new RunnerError('IDEMPOTENCY_CONFLICT');
  return { task: stored, created: false };
}

/** The task stored in the session under the idempotency key, if any. */
export async function findByIdempotencyKey(db: Db, sessionKey: string, idempotencyKey: string): Promise<Task | undefined> {
  const row = await db.selectFrom('tasks').selectAll()
    .where('session_key', '=', sessionKey).where('idempotency_key', '=', idempotencyKey)
    .executeTakeFirst();
  return row && toTask(row);
}

export async function getTask(db: Db, id: string): Promise<Task | undefined> {
  const row = await db.selectFrom('tasks').selectAll().where('id', '=', id).executeTakeFirst();
  return row && toTask(row);
}

export async function listTasks(db: Db, sessionKey: string, page: PageRequest): Promise<Page<Task>> {
  const limit = pageLimit(page);
  let query = db.selectFrom('tasks').selectAll().where('session_key', '=', sessionKey);
  if (page.cursor) {
    const [createdAt, seq] = decodeCursor<number>(page.cursor, 'number');
    query = query.where((eb) => eb(eb.refTuple('created_at', 'seq'), '<', eb.tuple(createdAt, seq)));
  }
  const rows = await query.orderBy('created_at', 'desc').orderBy('seq', 'desc').limit(limit + 1).execute();
  const page_ = rows.slice(0, limit);
  const last = page_.at(-1);
  return {
    items: page_.map(toTask),
    nextCursor: rows.length > limit && last ? encodeCursor(last.created_at, last.seq) : null,
  };
}

export async function queuePosition(db: Db, task: Task): Promise<number> {
  const row = await db.selectFrom('tasks as q')
    .innerJoin('tasks as me', (join) => join.on('me.id', '=', task.id).onRef('me.session_key', '=', 'q.session_key'))
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('q.status', '=', 'queued')
    .where((eb) => eb(eb.refTuple('q.created_at', 'q.seq'), '<', eb.refTuple('me.created_at', 'me.seq')))
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

export async function countRunningTasks(db: Db): Promise<number> {
  const { n } = await db.selectFrom('tasks').select((eb) => eb.fn.countAll<number>().as('n'))
    .where('status', '=', 'running').executeTakeFirstOrThrow();
  return Number(n);
}

export async function countQueuedTasks(db: Db): Promise<number> {
  const { n } = await db.selectFrom('tasks').select((eb) => eb.fn.countAll<number>().as('n'))
    .where('status', '=', 'queued').executeTakeFirstOrThrow();
  return Number(n);
}

/** The session's oldest task still queued or running, if any. */
export async function oldestUnfinishedTask(db: Db, sessionKey: string): Promise<Task | undefined> {
  const row = await db.selectFrom('tasks').selectAll()
    .where('session_key', '=', sessionKey).where('status', 'in', ['queued', 'running'])
    .orderBy('created_at').orderBy('seq').limit(1)
    .executeTakeFirst();
  return row ? toTask(row) : undefined;
}
