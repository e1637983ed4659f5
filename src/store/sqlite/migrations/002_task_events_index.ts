/** Finds a task's events without scanning its session's log: replay of one task, and where a catch-up starts. */
import type { Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = Kysely<any>;

export async function up(db: AnyDb): Promise<void> {
  await db.schema.createIndex('events_task_idx').on('events').columns(['session_key', 'task_id', 'seq']).execute();
}

export async function down(db: AnyDb): Promise<void> {
  await db.schema.dropIndex('events_task_idx').execute();
}
