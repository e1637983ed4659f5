/**
 * The runner nodes sharing the store, with their leases, and the sessions they
 * own. The same in every dialect: PostgreSQL locks the node row a takeover
 * reads (FOR UPDATE SKIP LOCKED, so two reapers take each dead node once);
 * SQLite runs one transaction at a time and drops the clause.
 */
import type { ErrorBody } from '../../core/errors.ts';
import type { NodeRecord, NodeTakeover } from '../../core/ports/store.ts';
import { nodeToRow, toNode, type Db } from '../schema.ts';
import { interruptRunning } from './lifecycle.ts';

export async function registerNode(db: Db, node: NodeRecord): Promise<void> {
  const row = nodeToRow(node);
  await db.insertInto('nodes').values(row)
    .onConflict((oc) => oc.column('id').doUpdateSet({
      address: row.address, started_at: row.started_at, lease_expires_at: row.lease_expires_at, data_dir_mark: row.data_dir_mark,
    }))
    .execute();
}

export async function renewNodeLease(db: Db, nodeId: string, leaseExpiresAt: number): Promise<boolean> {
  const r = await db.updateTable('nodes').set({ lease_expires_at: leaseExpiresAt }).where('id', '=', nodeId).executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}

export async function listNodes(db: Db, now: number): Promise<NodeRecord[]> {
  const rows = await db.selectFrom('nodes').selectAll().where('lease_expires_at', '>=', now)
    .orderBy('started_at').orderBy('id').execute();
  return rows.map(toNode);
}

export async function reapExpiredNodes(db: Db, byNodeId: string, error: ErrorBody, now: number): Promise<NodeTakeover[]> {
  const expired = await db.selectFrom('nodes').select('id')
    .where('lease_expires_at', '<', now).where('id', '!=', byNodeId)
    .orderBy('started_at').orderBy('id').execute();
  const takeovers: NodeTakeover[] = [];
  // One transaction a node: a takeover that fails leaves the others done.
  for (const { id } of expired) {
    const takeover = await db.transaction().execute(async (trx): Promise<NodeTakeover | undefined> => {
      // Still expired (not renewed meanwhile) and not being taken by another reaper (else skipped: it is theirs).
      const node = await trx.selectFrom('nodes').select('id')
        .where('id', '=', id).where('lease_expires_at', '<', now)
        .forUpdate().skipLocked().executeTakeFirst();
      if (!node) return undefined;
      // Tasks first, then sessions: the order finishTask locks them in, so a node finishing late waits rather than deadlocks.
      const interrupted = await interruptRunning(trx, id, error, now);
      const released = await releaseOwned(trx, id);
      await trx.deleteFrom('nodes').where('id', '=', id).execute();
      return { nodeId: id, interrupted, releasedSessions: released };
    });
    if (takeover) takeovers.push(takeover);
  }
  return takeovers;
}

export async function removeNode(db: Db, nodeId: string): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await releaseOwned(trx, nodeId);
    await trx.deleteFrom('nodes').where('id', '=', nodeId).execute();
  });
}

export async function releaseSessions(db: Db, nodeId: string | null): Promise<void> {
  await releaseOwned(db, nodeId);
}

export async function sessionOwner(db: Db, sessionKey: string): Promise<string | null> {
  const row = await db.selectFrom('sessions').select('owner_node').where('key', '=', sessionKey).executeTakeFirst();
  return row?.owner_node ?? null;
}

/** Sessions owned by the node (any node when null) lose their owner; returns their keys, sorted. */
async function releaseOwned(db: Db, nodeId: string | null): Promise<string[]> {
  const query = db.updateTable('sessions').set({ owner_node: null });
  const rows = await (nodeId === null ? query.where('owner_node', 'is not', null) : query.where('owner_node', '=', nodeId))
    .returning('key').execute();
  return rows.map((r) => r.key).sort();
}
