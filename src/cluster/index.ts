/**
 * Several runner nodes on one PostgreSQL (docs/scaling.md). This folder owns
 * the cluster: the bus between nodes (local-bus.ts, pg-bus.ts), each node's
 * lease and the takeover of dead nodes (membership.ts), and what cluster
 * messages do to this node's services (cluster-node.ts). src/app.ts builds
 * it; the domain sees only the ClusterBus port.
 *
 * Must not touch: SQL beyond the bus's NOTIFY (state is the store's), Docker
 * (the caller hands in what removes a dead node's sandboxes).
 */
import { hostname } from 'node:os';
import type { ClusterBus } from '../core/ports/cluster-bus.ts';
import type { Store } from '../core/ports/store.ts';
import { ClusterNode, type ClusterNodeDeps } from './cluster-node.ts';
import { LocalClusterBus } from './local-bus.ts';
import { NodeMembership } from './membership.ts';
import { PgClusterBus } from './pg-bus.ts';

type Logger = ClusterNodeDeps['logger'] & { info(obj: object, msg?: string): void };

/** A node's id with several nodes: RUNNER_ID, else one made from the host name (unique per machine or pod). */
export function clusterNodeId(runnerId: string | undefined): string {
  if (runnerId) return runnerId;
  const host = hostname().replace(/[^A-Za-z0-9_.-]/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  return `node-${host || 'unnamed'}`;
}

/** The bus for this store: LISTEN/NOTIFY on PostgreSQL, nobody to tell on SQLite. */
export function clusterBus(databaseUrl: string | undefined, nodeId: string, logger: Logger): ClusterBus {
  return databaseUrl ? new PgClusterBus({ url: databaseUrl, nodeId, logger }) : new LocalClusterBus(nodeId);
}

export interface JoinOptions extends Omit<ClusterNodeDeps, 'logger'> {
  store: Store;
  address: string;
  dataDir: string;
  leaseMs: number;
  logger: Logger;
}

export interface ClusterMember {
  /** Live nodes' ids (the sandbox driver asks whether a container's owner is gone). */
  isLive(nodeId: string): Promise<boolean>;
  leave(): Promise<void>;
}

/** Starts the bus, joins the nodes on the store (throws when this node must not start), and answers them. */
export async function joinCluster(options: JoinOptions): Promise<ClusterMember> {
  const node = new ClusterNode(options);
  const membership = new NodeMembership({
    store: options.store,
    nodeId: options.bus.nodeId,
    address: options.address,
    dataDir: options.dataDir,
    leaseMs: options.leaseMs,
    onTakeover: (takeovers) => node.takeover(takeovers),
    onLeaseLost: () => node.leaseLost(),
    onRejoined: () => node.rejoined(),
    logger: options.logger,
  });
  await options.bus.start();
  try {
    await membership.join();
    // Nodes that died while none was up are taken over at once.
    await membership.reap();
  } catch (error) {
    node.close();
    await options.bus.close();
    throw error;
  }
  return {
    isLive: async (nodeId) => (await membership.nodes()).some((n) => n.id === nodeId),
    leave: async () => {
      node.close();
      await membership.leave();
      await options.bus.close();
    },
  };
}
