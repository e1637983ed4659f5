/**
 * The secret index: secrets in a radix tree, and the one-pass replacement of
 * the longest secret at each position of a text (`redactWith`), with the
 * marker and minimum length every redaction shares.
 *
 * Owns: matching and replacing secret values in text. Must not touch: which
 * secrets are known, to whom they belong or how long they are kept
 * (redactor.ts), text that arrives in pieces (stream-redactor.ts).
 */

export const REDACTED = '[REDACTED]';
/** Shorter values would mangle ordinary text ("1", "yes") without hiding anything worth hiding. */
export const MIN_SECRET_LENGTH = 6;

interface TrieNode {
  /** The characters on the edge into this node. */
  label: string;
  children: Map<number, TrieNode>;
  /** A secret ends here. */
  terminal: boolean;
}

/**
 * Secrets in a radix tree: adding or removing one costs its length, and the
 * longest secret at a position is one walk down the tree, however many
 * secrets share a prefix (a tenant flooding "sk-…" values cannot slow it).
 */
export class SecretIndex {
  private readonly root: TrieNode = { label: '', children: new Map(), terminal: false };
  private count = 0;

  get empty(): boolean {
    return this.count === 0;
  }

  add(secret: string): void {
    let node = this.root;
    let at = 0;
    for (;;) {
      if (at === secret.length) {
        if (!node.terminal) this.count += 1;
        node.terminal = true;
        return;
      }
      const first = secret.charCodeAt(at);
      const child = node.children.get(first);
      if (!child) {
        node.children.set(first, { label: secret.slice(at), children: new Map(), terminal: true });
        this.count += 1;
        return;
      }
      let shared = 0;
      while (shared < child.label.length && at + shared < secret.length && child.label.charCodeAt(shared) === secret.charCodeAt(at + shared)) shared += 1;
      if (shared < child.label.length) {
        // Split the edge where the new secret leaves it.
        const middle: TrieNode = { label: child.label.slice(0, shared), children: new Map(), terminal: false };
        child.label = child.label.slice(shared);
        middle.children.set(child.label.charCodeAt(0), child);
        node.children.set(first, middle);
        node = middle;
      } else {
        node = child;
      }
      at += shared;
    }
  }

  delete(secret: string): void {
    const path: TrieNode[] = [this.root];
    let node = this.root;
    let at = 0;
    while (at < secret.length) {
      const child = node.children.get(secret.charCodeAt(at));
      if (!child || !secret.startsWith(child.label, at)) return;
      at += child.label.length;
      node = child;
      path.push(node);
    }
    if (!node.terminal) return;
    node.terminal = false;
    this.count -= 1;
    // Prune what no secret needs any more; merge a lone child into its parent.
    for (let i = path.length - 1; i > 0; i--) {
      const current = path[i]!;
      const parent = path[i - 1]!;
      if (!current.terminal && current.children.size === 0) {
        parent.children.delete(current.label.charCodeAt(0));
      } else if (!current.terminal && current.children.size === 1) {
        const only = [...current.children.values()][0]!;
        only.label = current.label + only.label;
        parent.children.set(only.label.charCodeAt(0), only);
      } else {
        return;
      }
    }
  }

  /** Length of the longest secret that starts at `at` in `text` (0 when none does). */
  matchAt(text: string, at: number): number {
    let node = this.root;
    let position = at;
    let longest = 0;
    while (position < text.length) {
      const child = node.children.get(text.charCodeAt(position));
      if (!child || !text.startsWith(child.label, position)) break;
      position += child.label.length;
      node = child;
      if (node.terminal) longest = position - at;
    }
    return longest;
  }
}

/** Replaces, left to right, the longest secret of any index at each position, in one pass. */
export function redactWith(text: string, indexes: SecretIndex[]): string {
  const active = indexes.filter((index) => !index.empty);
  if (active.length === 0 || text.length < MIN_SECRET_LENGTH) return text;
  let out = '';
  let from = 0;
  for (let at = 0; at + MIN_SECRET_LENGTH <= text.length;) {
    let hit = 0;
    for (const index of active) hit = Math.max(hit, index.matchAt(text, at));
    if (hit > 0) {
      out += text.slice(from, at) + REDACTED;
      at += hit;
      from = at;
    } else {
      at += 1;
    }
  }
  return from === 0 ? text : out + text.slice(from);
}
