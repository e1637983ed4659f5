/**
 * Containers another runner node left on a shared engine when it died: once
 * its sessions are taken over, the node that took them removes them (their
 * agents would otherwise hold memory, and their names the sessions' names).
 */
import type Docker from 'dockerode';
import { LABELS } from './container-spec.ts';

/**
 * Removes every container labelled with `runnerId` made before `createdBefore`
 * (epoch ms: the takeover; a node restarted under the same id since then made
 * the newer ones); returns their session keys.
 */
export async function removeContainersOf(docker: Docker, runnerId: string, createdBefore: number): Promise<string[]> {
  const containers = await docker.listContainers({ all: true, filters: { label: [`${LABELS.instance}=${runnerId}`] } });
  const removed: string[] = [];
  for (const container of containers) {
    if (container.Labels?.[LABELS.instance] !== runnerId || container.Created * 1000 >= createdBefore) continue;
    await docker.getContainer(container.Id).remove({ force: true }).catch(() => undefined);
    removed.push(container.Labels[LABELS.sessionKey] ?? container.Id);
  }
  return removed;
}
