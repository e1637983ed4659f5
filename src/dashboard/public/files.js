// The session's workspace: folders to browse (the listing is recursive, so it is fetched once and walked
// here), a file's text on click. Binary or very large files are named, not shown.
import { useEffect, useState } from 'preact/hooks';
import { api, sessionPath } from './api.js';
import { html } from './html.js';
import { Empty, ErrorLine } from './ui.js';
import { bytes, relativeTime } from './format.js';

const MAX_SHOWN_BYTES = 512 * 1024;

/** The immediate children of `dir` in a recursive listing: folders first, then files, by name. */
function childrenOf(files, dir) {
  const prefix = dir ? `${dir}/` : '';
  const seen = new Map();
  for (const file of files) {
    if (!file.path.startsWith(prefix) || file.path === dir) continue;
    const rest = file.path.slice(prefix.length);
    const name = rest.split('/')[0];
    const path = prefix + name;
    if (rest.includes('/')) {
      if (!seen.has(path)) seen.set(path, { path, name, type: 'directory' });
    } else seen.set(path, { ...file, name, type: file.type === 'directory' ? 'directory' : file.type });
  }
  return [...seen.values()].sort((a, b) => (a.type === 'directory') === (b.type === 'directory') ? a.name.localeCompare(b.name) : a.type === 'directory' ? -1 : 1);
}

async function readText(sessionId, entry) {
  if (entry.size > MAX_SHOWN_BYTES) return { note: `${bytes(entry.size)}: too large to show here.` };
  const encoded = entry.path.split('/').map(encodeURIComponent).join('/');
  const response = await api(`${sessionPath(sessionId)}/files/${encoded}`, { raw: true });
  const buffer = new Uint8Array(await response.arrayBuffer());
  if (buffer.includes(0)) return { note: `Binary file, ${bytes(buffer.length)}.` };
  return { text: new TextDecoder().decode(buffer) };
}

export function FileBrowser({ sessionId, version }) {
  const [files, setFiles] = useState(null);
  const [dir, setDir] = useState('');
  const [open, setOpen] = useState(null);
  const [error, setError] = useState(null);

  useEffect(() => {
    let live = true;
    api(`${sessionPath(sessionId)}/files?path=`)
      .then((body) => live && (setFiles(body.files), setError(null)))
      .catch((e) => live && (e.code === 'SESSION_NOT_FOUND' ? setFiles([]) : setError(e.message)));
    return () => {
      live = false;
    };
  }, [sessionId, version]);

  const show = async (entry) => {
    setOpen({ path: entry.path, loading: true });
    try {
      setOpen({ path: entry.path, ...(await readText(sessionId, entry)) });
    } catch (e) {
      setOpen({ path: entry.path, note: e.message, failed: true });
    }
  };

  if (error) return html`<${ErrorLine} error=${error} />`;
  if (files === null) return html`<${Empty}>Loading…</${Empty}>`;
  const entries = childrenOf(files, dir);
  const crumbs = dir ? dir.split('/') : [];
  return html`
    <div class="files">
      <nav class="crumbs">
        <a href="#" onClick=${(e) => (e.preventDefault(), setDir(''))}>workspace</a>
        ${crumbs.map((name, i) => html` / <a href="#" onClick=${(e) => (e.preventDefault(), setDir(crumbs.slice(0, i + 1).join('/')))}>${name}</a>`)}
      </nav>
      ${entries.length === 0 ? html`<${Empty}>Empty folder.</${Empty}>` : html`
        <ul class="file-list">
          ${entries.map((entry) => html`
            <li key=${entry.path} class=${entry.path === open?.path ? 'selected' : ''}>
              ${entry.type === 'directory'
                ? html`<button type="button" class="link file-entry" data-path=${entry.path} onClick=${() => setDir(entry.path)}>▸ ${entry.name}/</button>`
                : entry.type === 'symlink'
                  ? html`<span class="file-entry muted" data-path=${entry.path}>${entry.name} → (link)</span>`
                  : html`<button type="button" class="link file-entry" data-path=${entry.path} onClick=${() => show(entry)}>${entry.name}</button>`}
              <span class="muted small">${entry.type === 'file' ? bytes(entry.size) : ''}</span>
              <span class="muted small">${entry.modifiedAt ? relativeTime(entry.modifiedAt) : ''}</span>
            </li>`)}
        </ul>`}
      ${open ? html`
        <div class="file-view">
          <div class="file-view-head"><code>${open.path}</code><button type="button" class="btn small" onClick=${() => setOpen(null)}>Close</button></div>
          ${open.loading ? html`<${Empty}>Loading…</${Empty}>` : open.text !== undefined ? html`<pre class="code file-text">${open.text}</pre>` : html`<div class=${open.failed ? 'error-line' : 'empty'}>${open.note}</div>`}
        </div>` : null}
    </div>`;
}
