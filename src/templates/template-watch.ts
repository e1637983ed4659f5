/**
 * Tells when a template's folder changes (a file written, added, removed or
 * renamed anywhere in it), a short while after the last change of a burst: a
 * copy being deployed is told once. The ready pool uses it to drain sessions
 * whose workspace was copied from the older files.
 *
 * Must not touch: the folders (it only watches them).
 */
import { watch, type FSWatcher } from 'node:fs';

export interface TemplateWatchOptions {
  /** Template name → its folder. */
  folders: Map<string, string>;
  onChange(template: string): void;
  /** Quiet time after the last change before it is told (default 200 ms). */
  settleMs?: number;
  logger: { warn(obj: object, msg?: string): void };
}

/** Watches every folder; returns the function that stops watching. */
export function watchTemplates(options: TemplateWatchOptions): () => void {
  const watchers: FSWatcher[] = [];
  const timers = new Map<string, NodeJS.Timeout>();
  for (const [name, folder] of options.folders) {
    try {
      const watcher = watch(folder, { recursive: true, persistent: false }, () => {
        clearTimeout(timers.get(name));
        const timer = setTimeout(() => {
          timers.delete(name);
          options.onChange(name);
        }, options.settleMs ?? 200);
        timer.unref();
        timers.set(name, timer);
      });
      watcher.on('error', (error) => options.logger.warn({ template: name, err: error }, 'template watch failed: changes to it no longer drain its ready sessions'));
      watchers.push(watcher);
    } catch (error) {
      // Out of inotify watches, say: the pool still works, only a restart picks up the template's new files.
      options.logger.warn({ template: name, folder, err: error }, 'cannot watch a template folder: its ready sessions are not drained when it changes');
    }
  }
  return () => {
    for (const watcher of watchers) watcher.close();
    for (const timer of timers.values()) clearTimeout(timer);
  };
}
