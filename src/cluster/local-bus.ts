/** The bus of a runner alone on its store (SQLite): nobody else to tell, and always the leader. */
import { RunnerError } from '../core/errors.ts';
import type { ClusterBus } from '../core/ports/cluster-bus.ts';

export class LocalClusterBus implements ClusterBus {
  readonly nodeId: string;

  constructor(nodeId: string) {
    this.nodeId = nodeId;
  }

  async notify(): Promise<void> {}

  async request(nodeId: string): Promise<void> {
    throw new RunnerError('NODE_UNREACHABLE', `No runner node "${nodeId}" shares this store.`);
  }

  listen(): void {}

  isLeader(): boolean {
    return true;
  }

  onLeadership(): void {}

  async start(): Promise<void> {}

  async close(): Promise<void> {}
}
