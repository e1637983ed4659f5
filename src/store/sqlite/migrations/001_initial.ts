/**
 * Sessions, tasks and their event logs. Migrations are frozen once released:
 * change the schema in a new numbered file, never here.
 */
import { sql, type Kysely } from 'kysely';

// Migrations see the schema as it was when they were written, not today's types.
type AnyDb = Kysely<any>;

const statuses = sql.raw(
  "('queued', 'running', 'succeeded', 'failed', 'aborted', 'interrupted', 'timed_out', 'budget_exceeded')",
);

export async function up(db: AnyDb): Promise<void> {
  await db.schema
    .createTable('sessions')
    .addColumn('key', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('id', 'text', (c) => c.notNull())
    .addColumn('agent', 'text', (c) => c.notNull())
    .addColumn('agent_session_id', 'text')
    .addColumn('turns', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('total_cost_usd', 'real', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'integer', (c) => c.notNull())
    .addColumn('last_activity_at', 'integer', (c) => c.notNull())
    .addColumn('last_served_at', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('last_event_seq', 'integer', (c) => c.notNull().defaultTo(0))
    .addUniqueConstraint('sessions_tenant_id_id_key', ['tenant_id', 'id'])
    .execute();
  // listSessions pages newest first, per tenant or over all of them.
  await db.schema.createIndex('sessions_tenant_created_idx').on('sessions')
    .columns(['tenant_id', 'created_at desc', 'key desc']).execute();
  await db.schema.createIndex('sessions_created_idx').on('sessions')
    .columns(['created_at desc', 'key desc']).execute();
  await db.schema.createIndex('sessions_last_activity_idx').on('sessions')
    .column('last_activity_at').execute();

  await db.schema
    .createTable('tasks')
    // A rowid alias: insertion order that VACUUM keeps (an implicit rowid it may renumber).
    .addColumn('seq', 'integer', (c) => c.primaryKey())
    .addColumn('id', 'text', (c) => c.notNull().unique())
    .addColumn('session_key', 'text', (c) => c.notNull().references('sessions.key').onDelete('cascade'))
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('session_id', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('message', 'text', (c) => c.notNull())
    .addColumn('context', 'text')
    .addColumn('sealed_env', 'text')
    .addColumn('options', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('idempotency_key', 'text')
    .addColumn('request_hash', 'text')
    .addColumn('created_at', 'integer', (c) => c.notNull())
    .addColumn('started_at', 'integer')
    .addColumn('finished_at', 'integer')
    .addColumn('runner_id', 'text')
    .addColumn('cost_usd', 'real')
    .addColumn('duration_ms', 'integer')
    .addColumn('tools', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('output', 'text')
    .addColumn('error', 'text')
    .addColumn('resumed', 'integer')
    .addColumn('usage', 'text')
    .addCheckConstraint('tasks_status_check', sql`status in ${statuses}`)
    .execute();
  await db.schema.createIndex('tasks_idempotency_key').unique().on('tasks')
    .columns(['session_key', 'idempotency_key'])
    .where(sql.ref('idempotency_key'), 'is not', null).execute();
  // The last line of defence for "one running task per session".
  await db.schema.createIndex('tasks_one_running_per_session').unique().on('tasks')
    .column('session_key')
    .where(sql<boolean>`status = 'running'`).execute();
  // Claiming, queue depth and queue position: queued tasks of a session in order.
  await db.schema.createIndex('tasks_claim_idx').on('tasks')
    .columns(['status', 'session_key', 'created_at']).execute();
  await db.schema.createIndex('tasks_list_idx').on('tasks')
    .columns(['session_key', 'created_at desc', 'seq desc']).execute();

  await db.schema
    .createTable('events')
    .addColumn('session_key', 'text', (c) => c.notNull().references('sessions.key').onDelete('cascade'))
    .addColumn('seq', 'integer', (c) => c.notNull())
    .addColumn('task_id', 'text')
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('data', 'text', (c) => c.notNull())
    .addColumn('ts', 'integer', (c) => c.notNull())
    .addPrimaryKeyConstraint('events_pkey', ['session_key', 'seq'])
    // Clustered by (session_key, seq): reads after a seq are one range scan.
    .modifyEnd(sql`without rowid`)
    .execute();
  await db.schema.createIndex('events_ts_idx').on('events').column('ts').execute();
}

export async function down(db: AnyDb): Promise<void> {
  await db.schema.dropTable('events').execute();
  await db.schema.dropTable('tasks').execute();
  await db.schema.dropTable('sessions').execute();
}
