/**
 * The whole schema as of SQLite's migration 005: sessions (with their owner
 * node), tasks, events, the webhook outbox and the nodes. The same tables and
 * columns as SQLite's (src/store/schema.ts): epoch ms, seqs and counts are
 * bigint (read back as numbers, connection.ts), money is double precision,
 * JSON is text, booleans are 0/1. Frozen once released: change the schema in
 * a new numbered file, never here.
 */
import { sql, type Kysely } from 'kysely';

// Migrations see the schema as it was when they were written, not today's types.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = Kysely<any>;

const statuses = sql.raw(
  "('queued', 'running', 'succeeded', 'failed', 'aborted', 'interrupted', 'timed_out', 'budget_exceeded')",
);

export async function up(db: AnyDb): Promise<void> {
  await db.schema
    .createTable('nodes')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('address', 'text', (c) => c.notNull())
    .addColumn('started_at', 'bigint', (c) => c.notNull())
    .addColumn('lease_expires_at', 'bigint', (c) => c.notNull())
    .addColumn('data_dir_mark', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('sessions')
    .addColumn('key', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('id', 'text', (c) => c.notNull())
    .addColumn('agent', 'text', (c) => c.notNull())
    .addColumn('agent_session_id', 'text')
    .addColumn('turns', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('total_cost_usd', 'double precision', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('last_activity_at', 'bigint', (c) => c.notNull())
    .addColumn('last_served_at', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('last_event_seq', 'bigint', (c) => c.notNull().defaultTo(0))
    // No foreign key to nodes: a session keeps its owner's id until a takeover or a release clears it.
    .addColumn('owner_node', 'text')
    .addUniqueConstraint('sessions_tenant_id_id_key', ['tenant_id', 'id'])
    .execute();
  await db.schema.createIndex('sessions_tenant_created_idx').on('sessions')
    .columns(['tenant_id', 'created_at desc', 'key desc']).execute();
  await db.schema.createIndex('sessions_created_idx').on('sessions')
    .columns(['created_at desc', 'key desc']).execute();
  await db.schema.createIndex('sessions_last_activity_idx').on('sessions')
    .column('last_activity_at').execute();
  await db.schema.createIndex('sessions_owner_node_idx').on('sessions')
    .column('owner_node').execute();

  await db.schema
    .createTable('tasks')
    // Insertion order: breaks ties between tasks created in the same ms.
    .addColumn('seq', 'bigint', (c) => c.generatedByDefaultAsIdentity().primaryKey())
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
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('started_at', 'bigint')
    .addColumn('finished_at', 'bigint')
    .addColumn('runner_id', 'text')
    .addColumn('cost_usd', 'double precision')
    .addColumn('duration_ms', 'bigint')
    .addColumn('tools', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('output', 'text')
    .addColumn('error', 'text')
    .addColumn('resumed', 'integer')
    .addColumn('usage', 'text')
    // JSON PendingInput[] while the task waits for a person (it stays `running` here).
    .addColumn('pending_input', 'text')
    .addCheckConstraint('tasks_status_check', sql`status in ${statuses}`)
    .execute();
  await db.schema.createIndex('tasks_idempotency_key').unique().on('tasks')
    .columns(['session_key', 'idempotency_key'])
    .where(sql.ref('idempotency_key'), 'is not', null).execute();
  // The last line of defence for "one running task per session", whichever node claims.
  await db.schema.createIndex('tasks_one_running_per_session').unique().on('tasks')
    .column('session_key')
    .where(sql<boolean>`status = 'running'`).execute();
  // Claiming, queue depth and queue position: queued tasks of a session in order.
  await db.schema.createIndex('tasks_claim_idx').on('tasks')
    .columns(['status', 'session_key', 'created_at']).execute();
  await db.schema.createIndex('tasks_list_idx').on('tasks')
    .columns(['session_key', 'created_at desc', 'seq desc']).execute();
  // A node's running tasks, at its takeover.
  await db.schema.createIndex('tasks_running_runner_idx').on('tasks')
    .column('runner_id')
    .where(sql<boolean>`status = 'running'`).execute();

  await db.schema
    .createTable('events')
    .addColumn('session_key', 'text', (c) => c.notNull().references('sessions.key').onDelete('cascade'))
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .addColumn('task_id', 'text')
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('data', 'text', (c) => c.notNull())
    .addColumn('ts', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('events_pkey', ['session_key', 'seq'])
    .execute();
  await db.schema.createIndex('events_ts_idx').on('events').column('ts').execute();
  await db.schema.createIndex('events_task_idx').on('events').columns(['session_key', 'task_id', 'seq']).execute();

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
    .addColumn('next_attempt_at', 'bigint', (c) => c.notNull().defaultTo(0))
    .addCheckConstraint('webhook_deliveries_status_check', sql`status in ('pending', 'delivered', 'failed')`)
    .execute();
  await db.schema.createIndex('webhook_deliveries_due_idx').on('webhook_deliveries')
    .columns(['status', 'next_attempt_at']).execute();
  await db.schema
    .createTable('webhook_attempts')
    .addColumn('task_id', 'text', (c) => c.notNull().references('webhook_deliveries.task_id').onDelete('cascade'))
    .addColumn('n', 'integer', (c) => c.notNull())
    .addColumn('at', 'bigint', (c) => c.notNull())
    .addColumn('status_code', 'integer')
    .addColumn('error', 'text')
    .addColumn('duration_ms', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('webhook_attempts_pkey', ['task_id', 'n'])
    .execute();
}

export async function down(db: AnyDb): Promise<void> {
  for (const table of ['webhook_attempts', 'webhook_deliveries', 'events', 'tasks', 'sessions', 'nodes']) {
    await db.schema.dropTable(table).execute();
  }
}
