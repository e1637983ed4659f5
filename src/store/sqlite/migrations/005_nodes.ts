/**
 * Several runner nodes on one store: the nodes with their leases, and the
 * node that owns each session (runs its tasks, holds its sandbox; null: none).
 * "One running task per session" is already a partial unique index (001's
 * tasks_one_running_per_session), so no data of an older file can break it.
 */
import type { Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = Kysely<any>;

export async function up(db: AnyDb): Promise<void> {
  await db.schema
    .createTable('nodes')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('address', 'text', (c) => c.notNull())
    .addColumn('started_at', 'integer', (c) => c.notNull())
    .addColumn('lease_expires_at', 'integer', (c) => c.notNull())
    .addColumn('data_dir_mark', 'text', (c) => c.notNull())
    .execute();
  await db.schema.alterTable('sessions').addColumn('owner_node', 'text').execute();
  // Releasing a node's sessions (shutdown, takeover) finds them without a scan.
  await db.schema.createIndex('sessions_owner_node_idx').on('sessions').column('owner_node').execute();
}

export async function down(db: AnyDb): Promise<void> {
  await db.schema.dropIndex('sessions_owner_node_idx').execute();
  await db.schema.alterTable('sessions').dropColumn('owner_node').execute();
  await db.schema.dropTable('nodes').execute();
}
