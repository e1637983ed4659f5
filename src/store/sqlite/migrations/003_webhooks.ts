/**
 * The webhook outbox: one delivery per task that asked for a webhook (inserted
 * with the task, so no crash can lose it) and every attempt made for it.
 * A deleted task (its session deleted) takes its deliveries with it.
 */
import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = Kysely<any>;

export async function up(db: AnyDb): Promise<void> {
  await db.schema
    .createTable('webhook_deliveries')
    .addColumn('task_id', 'text', (c) => c.primaryKey().references('tasks.id').onDelete('cascade'))
    .addColumn('url', 'text', (c) => c.notNull())
    // Fixed at the first attempt, so every retry sends the same id and the same bytes.
    .addColumn('webhook_id', 'text')
    .addColumn('type', 'text')
    .addColumn('body', 'text')
    .addColumn('status', 'text', (c) => c.notNull().defaultTo('pending'))
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    // 0: due as soon as its task is final.
    .addColumn('next_attempt_at', 'integer', (c) => c.notNull().defaultTo(0))
    .addCheckConstraint('webhook_deliveries_status_check', sql`status in ('pending', 'delivered', 'failed')`)
    .execute();
  await db.schema.createIndex('webhook_deliveries_due_idx').on('webhook_deliveries')
    .columns(['status', 'next_attempt_at']).execute();
  await db.schema
    .createTable('webhook_attempts')
    .addColumn('task_id', 'text', (c) => c.notNull().references('webhook_deliveries.task_id').onDelete('cascade'))
    .addColumn('n', 'integer', (c) => c.notNull())
    .addColumn('at', 'integer', (c) => c.notNull())
    .addColumn('status_code', 'integer')
    .addColumn('error', 'text')
    .addColumn('duration_ms', 'integer', (c) => c.notNull())
    .addPrimaryKeyConstraint('webhook_attempts_pkey', ['task_id', 'n'])
    .execute();
}

export async function down(db: AnyDb): Promise<void> {
  await db.schema.dropTable('webhook_attempts').execute();
  await db.schema.dropTable('webhook_deliveries').execute();
}
