/**
 * What a task waits for a person to answer. A waiting task stays `running` in
 * the table (so the one-running-task-per-session index and every claim keep
 * holding); the store reports it as `awaiting_input` while this is set.
 */
import type { Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = Kysely<any>;

export async function up(db: AnyDb): Promise<void> {
  await db.schema.alterTable('tasks').addColumn('pending_input', 'text').execute();
}

export async function down(db: AnyDb): Promise<void> {
  await db.schema.alterTable('tasks').dropColumn('pending_input').execute();
}
